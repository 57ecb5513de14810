"""Turning ``KEY=VALUE`` strings (CLI flags, query strings) into typed analysis filters."""

from __future__ import annotations

from tracehouse.analyses.sweep import FILTERS, KNOBS
from tracehouse.core.errors import BadInput
from tracehouse.core.meta import field_name, parse_key_values


def typed_filters(pairs: list[str], source: str = "filter") -> dict[str, object]:
    """``["image-size=512", "attention_backend=flash"]`` → ``{"image_size": 512, ...}`` (knob
    names spelled as anywhere else); ``source`` names the flag or parameter for errors."""
    out: dict[str, object] = {}
    for given, value in parse_key_values(pairs, source).items():
        key = field_name(given, FILTERS)
        if key in KNOBS:
            try:
                out[key] = int(value)
            except ValueError:
                raise BadInput(f"{key}={value!r} is not an integer") from None
        else:
            out[key] = value
    return out
