"""tracehouse.api."""
