"""Where a tracehouse's files live, derived from its settings: kept apart from ``settings.py``
so that a command needing only these paths does not import pydantic (see
``api.cli_common.PathSettings``); ``Settings`` inherits them, so both derive them one way."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tracehouse.core.limits import default_inflated_limit


def default_data_dir() -> Path:
    import platformdirs  # imported when no data directory is set: every CLI start pays for imports

    return Path(platformdirs.user_data_dir("tracehouse", appauthor=False))


class DataPaths:
    """The paths and limits computed from ``database_url``, ``data_dir``, ``rules_path``,
    ``store_root`` and the size limits, whichever class holds those fields."""

    if TYPE_CHECKING:  # declared for the type checker only: pydantic would take them as fields
        database_url: str | None
        data_dir: Path
        rules_path: Path | None
        store_root: Path | None
        max_trace_bytes: int
        max_inflated_bytes: int | None

    def resolved_database_url(self, override: str | None = None) -> str:
        if override:
            return override
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'tracehouse.sqlite3'}"

    def inflated_limit(self) -> int:
        return self.max_inflated_bytes or default_inflated_limit(self.max_trace_bytes)

    def store_dir(self) -> Path:
        """Where the upload spool and the raw store live: the store root several hosts share,
        else the data directory."""
        return self.store_root or self.data_dir

    def raw_dir(self) -> Path:
        return self.store_dir() / "raw"

    def upload_dir(self) -> Path:
        return self.store_dir() / "uploads"

    def rules_file(self) -> Path:
        return self.rules_path or self.data_dir / "rules.toml"
