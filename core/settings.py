"""Settings from the environment (``TRACEHOUSE_*``) and CLI flags; built on demand, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tracehouse.core.data_paths import DataPaths, default_data_dir
from tracehouse.core.limits import DEFAULT_MAX_TRACE_BYTES

__all__ = ["Settings", "default_data_dir", "load_settings"]


class Settings(DataPaths, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRACEHOUSE_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file in the data directory"
    )
    data_dir: Path = Field(
        default_factory=default_data_dir, description="Where raw uploaded traces and the default database live"
    )
    max_trace_bytes: int = Field(default=DEFAULT_MAX_TRACE_BYTES, description="Largest trace accepted")
    max_inflated_bytes: int | None = Field(
        default=None,
        gt=0,
        description="Most bytes a gzip upload may inflate to (a gzip bomb is refused while it "
        "inflates); default: 16 x max_trace_bytes, at most 1 GiB",
    )
    host: str = Field(default="127.0.0.1", description="Address the service listens on")
    port: int = Field(default=8000, description="Port the service listens on")
    public_read: bool = Field(default=False, description="Serve read queries without a token")
    max_rows: int = Field(default=100_000, description="Row cap on one query answer")
    queue_stuck_seconds: float = Field(
        default=900.0, description="/healthz answers 503 when a job has been queued longer than this"
    )
    worker_stale_seconds: float = Field(
        default=60.0, description="/healthz answers 503 when the idle ingest worker is silent longer than this"
    )
    store_root: Path | None = Field(
        default=None,
        description="Where the upload spool and the raw store live (default: the data "
        "directory); a folder every API replica and ingest worker mounts at the same path",
    )
    worker_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="An ingest worker renews its claim on a job every third of "
        "this; a job whose lease ran out (its worker died) is claimed by another worker",
    )
    worker_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often a `tracehouse worker` looks for queued jobs"
    )
    gc_grace_seconds: float = Field(
        default=3600.0, description="Orphan raw and spool files younger than this are never reclaimed"
    )
    gc_on_start: bool = Field(default=True, description="Reclaim orphan raw and spool files at service start")
    rules_path: Path | None = Field(
        default=None, description="A lab's kernel-name rules (TOML); default: rules.toml in the data directory"
    )


def load_settings(**overrides: Any) -> Settings:  # pydantic checks each against its field
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
