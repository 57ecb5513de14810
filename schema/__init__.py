"""tracehouse.schema."""
