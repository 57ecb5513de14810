"""Settings from the environment (``TRACEHOUSE_*``) and CLI flags; built on demand, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tracehouse.core.limits import DEFAULT_MAX_TRACE_BYTES, default_inflated_limit


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("tracehouse", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRACEHOUSE_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file in the data directory")
    data_dir: Path = Field(default_factory=default_data_dir,
                           description="Where raw uploaded traces and the default database live")
    max_trace_bytes: int = Field(default=DEFAULT_MAX_TRACE_BYTES, description="Largest trace accepted")
    max_inflated_bytes: int | None = Field(
        default=None, gt=0,
        description="Most bytes a gzip upload may inflate to (a gzip bomb is refused while it "
                    "inflates); default: 16 x max_trace_bytes, at most 1 GiB")
    host: str = Field(default="127.0.0.1", description="Address the service listens on")
    port: int = Field(default=8000, description="Port the service listens on")
    public_read: bool = Field(default=False, description="Serve read queries without a token")
    max_rows: int = Field(default=100_000, description="Row cap on one query answer")
    queue_stuck_seconds: float = Field(
        default=900.0, description="/healthz answers 503 when a job has been queued longer than this")
    worker_stale_seconds: float = Field(
        default=60.0, description="/healthz answers 503 when the idle ingest worker is silent longer than this")
    store_root: Path | None = Field(
        default=None, description="Where the upload spool and the raw store live (default: the data "
        "directory); a folder every API replica and ingest worker mounts at the same path")
    worker_lease_seconds: float = Field(
        default=60.0, gt=0, description="An ingest worker renews its claim on a job every third of "
        "this; a job whose lease ran out (its worker died) is claimed by another worker")
    worker_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often a `tracehouse worker` looks for queued jobs")
    gc_grace_seconds: float = Field(
        default=3600.0, description="Orphan raw and spool files younger than this are never reclaimed")
    gc_on_start: bool = Field(default=True, description="Reclaim orphan raw and spool files at service start")
    rules_path: Path | None = Field(default=None, description="A lab's kernel-name rules (TOML); "
                                    "default: rules.toml in the data directory")

    def resolved_database_url(self, override: str | None = None) -> str:
        if override:
            return override
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'tracehouse.sqlite3'}"

    def inflated_limit(self) -> int:
        return self.max_inflated_bytes or default_inflated_limit(self.max_trace_bytes)

    def store_dir(self) -> Path:
        return self.store_root or self.data_dir

    def raw_dir(self) -> Path:
        return self.store_dir() / "raw"

    def upload_dir(self) -> Path:
        return self.store_dir() / "uploads"

    def rules_file(self) -> Path:
        return self.rules_path or self.data_dir / "rules.toml"


def load_settings(**overrides: Any) -> Settings:  # pydantic checks each against its field
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
