"""tracehouse.ingest."""
