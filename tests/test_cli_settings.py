"""``PathSettings`` (the CLI's pydantic-free reader of the paths) gives what ``Settings`` gives
for the same environment, so ``tracehouse ingest`` finds the same database, raw store and rules."""

from __future__ import annotations

import pytest

from tracehouse.api.cli_common import PathSettings
from tracehouse.core.settings import Settings

ENVIRONMENTS = [
    {},
    {"TRACEHOUSE_DATA_DIR": "/srv/th"},
    {"TRACEHOUSE_DATA_DIR": "relative/dir", "TRACEHOUSE_RULES_PATH": "/etc/th/rules.toml"},
    {"TRACEHOUSE_DATABASE_URL": "postgresql://u@h:5432/db", "TRACEHOUSE_DATA_DIR": " spaced "},
    {"tracehouse_data_dir": "/lower/case", "Tracehouse_Database_Url": "sqlite:////x/y.sqlite3"},
    {"TRACEHOUSE_DATABASE_URL": "", "TRACEHOUSE_DATA_DIR": "", "TRACEHOUSE_RULES_PATH": ""},
    {"TRACEHOUSE_RULES_PATH": "~/rules.toml", "TRACEHOUSE_PORT": "9000"},
]


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("override", [None, "", "sqlite:////given/on/the/command/line.sqlite3"])
def test_path_settings_equal_pydantic_settings(
    env: dict[str, str], override: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TRACEHOUSE_DATA_DIR", "TRACEHOUSE_DATABASE_URL", "TRACEHOUSE_RULES_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ours, theirs = PathSettings(), Settings()
    assert ours.resolved_database_url(override) == theirs.resolved_database_url(override)
    assert ours.raw_dir() == theirs.raw_dir()
    assert ours.rules_file() == theirs.rules_file()
    assert ours.upload_dir() == theirs.upload_dir()
