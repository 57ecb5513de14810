"""tracehouse.analyses."""
