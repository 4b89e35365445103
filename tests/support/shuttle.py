"""Session fixtures of the shuttle twin, shared by every suite (moved here from the
per-directory conftest files)."""
