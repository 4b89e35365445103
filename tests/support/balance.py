"""Session fixtures of the balance twin, shared by every suite (moved here from the
per-directory conftest files)."""
