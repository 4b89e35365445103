"""Session fixtures of the cellq twin, shared by every suite (moved here from the
per-directory conftest files)."""
