"""Turning ``KEY=VALUE`` strings (CLI flags, query strings) into typed analysis filters."""

from __future__ import annotations

from tracehouse.analyses.sweep import KNOBS
from tracehouse.core.errors import BadInput
from tracehouse.ingest.meta import parse_key_values


def typed_filters(pairs: list[str]) -> dict[str, object]:
    """``["image_size=512", "attention_backend=flash"]`` → ``{"image_size": 512, ...}``."""
    out: dict[str, object] = {}
    for key, value in parse_key_values(pairs).items():
        if key in KNOBS:
            try:
                out[key] = int(value)
            except ValueError:
                raise BadInput(f"{key}={value!r} is not an integer") from None
        else:
            out[key] = value
    return out
