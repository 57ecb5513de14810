"""The Python client of a tracehouse service: every query as a polars DataFrame (Parquet on the
wire), uploads and ingest jobs.  It needs httpx and polars only: no torch, FastAPI or SQLAlchemy.

    from tracehouse.client import Client
    with Client("http://127.0.0.1:8000", token) as th:
        th.breakdown(7, by="operator")
"""

from tracehouse.client.query import Client
from tracehouse.client.upload import upload_files

__all__ = ["Client", "upload_files"]
