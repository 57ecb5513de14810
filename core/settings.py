"""Settings from the environment (``TRACEHOUSE_*``) and CLI flags; built on demand, never at import."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("tracehouse", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRACEHOUSE_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file in the data directory")
    data_dir: Path = Field(default_factory=default_data_dir,
                           description="Where raw uploaded traces and the default database live")
    max_trace_bytes: int = Field(default=2 * 1024**3, description="Largest trace accepted")

    def resolved_database_url(self, override: str | None = None) -> str:
        if override:
            return override
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'tracehouse.sqlite3'}"

    def raw_dir(self) -> Path:
        return self.data_dir / "raw"


def load_settings(**overrides: object) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
