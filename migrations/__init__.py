"""tracehouse.migrations."""
