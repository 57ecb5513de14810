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


def fraction(text: str | float, name: str = "threshold") -> float:
    """``"5%"`` or ``"0.05"`` (or 0.05) → 0.05."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise BadInput(f"{name} {text!r} is not a fraction such as 5% or 0.05") from None
    if not 0 <= value < 10:
        raise BadInput(f"{name} {text!r} is out of range")
    return value


def run_id_list(items: list[str] | list[int], name: str = "runs") -> list[int]:
    """``["1,2", "3"]`` → ``[1, 2, 3]``: repeats given comma-separated or one by one."""
    out: list[int] = []
    for item in items:
        for part in str(item).split(","):
            if part.strip():
                try:
                    out.append(int(part))
                except ValueError:
                    raise BadInput(f"{name}: {part!r} is not a run id") from None
    if not out:
        raise BadInput(f"{name}: name at least one run id")
    return out
