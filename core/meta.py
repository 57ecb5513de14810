"""Run metadata: what a user (CLI flags, upload form) or a collector manifest says about a run.

The trace itself says little (device name, rank); the knobs the paper sweeps (image size,
frames, steps, attention backend) only exist here.  A collector writes a manifest JSON next
to each trace (``<trace>.manifest.json``) with the keys of :class:`RunMeta`; unknown keys
go into ``tags`` so nothing a lab records is dropped.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, SupportsIndex, SupportsInt

import orjson

from tracehouse.core.errors import BadInput, InvalidField

MANIFEST_SUFFIX = ".manifest.json"


@dataclass(frozen=True, slots=True)
class RunMeta:
    model: str | None = None
    family: str | None = None  # llm / tti / ttv
    architecture: str | None = None
    param_count: int | None = None
    scale: str | None = None  # tiny / paper
    hardware: str | None = None  # overrides the trace's deviceProperties
    attention_backend: str | None = None  # baseline / flash / ...
    batch: int | None = None
    dtype: str | None = None
    image_size: int | None = None
    frames: int | None = None
    denoising_steps: int | None = None
    decode_tokens: int | None = None
    text_length: int | None = None
    peak_memory_bytes: int | None = None
    host: str | None = None
    experiment: str | None = None  # repeats of one command share one
    git_commit: str | None = None  # the collector's checkout, or what the user said
    version: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def merged(self, other: RunMeta) -> RunMeta:
        """``other``'s set values win; tags are merged key by key."""
        changes = {
            f.name: getattr(other, f.name)
            for f in fields(other)
            if f.name != "tags" and getattr(other, f.name) is not None
        }
        return replace(self, **changes, tags={**self.tags, **other.tags})


_INT_FIELDS = {f.name for f in fields(RunMeta) if "int" in str(f.type)}
_KNOWN = {f.name for f in fields(RunMeta)}
# The schema's bounds (schema/models.py), checked here so that a value too long or too big is
# the same 422 on SQLite (which would store it) and PostgreSQL (which would refuse it).
MAX_TEXT = {
    "model": 200,
    "family": 16,
    "architecture": 64,
    "scale": 16,
    "hardware": 200,
    "attention_backend": 32,
    "dtype": 16,
    "host": 200,
    "experiment": 200,
    "git_commit": 64,
    "version": 64,
}
MAX_TAG_KEY = 200
MAX_TAG_VALUE = 4096
_BIG_INT_FIELDS = {"param_count", "peak_memory_bytes"}  # BIGINT columns; the others are INTEGER


def _checked_int(key: str, value: int) -> int:
    bits = 63 if key in _BIG_INT_FIELDS else 31
    if not -(2**bits) <= value < 2**bits:
        raise InvalidField(f"metadata {key}={value} is out of range (at most {2**bits - 1})")
    return value


def _checked_text(key: str, value: str, limit: int) -> str:
    if "\x00" in value:
        raise InvalidField(f"metadata {key[:40]!r} holds a NUL character")
    if len(value) > limit:
        raise InvalidField(f"metadata {key[:40]!r} is {len(value)} characters; at most {limit} are allowed")
    return value


# The collector's --steps is the store's denoising_steps.
_FIELD_ALIASES = {"steps": "denoising_steps"}


def field_name(key: str, known: Collection[str] = _KNOWN) -> str:
    """The field ``key`` names when it names one of ``known``: one spelling per knob whichever
    interface names it, with - or _ alike (``image-size``, ``image_size``) and ``steps`` for
    ``denoising_steps``.  Any other key (a lab's own tag) comes back as given."""
    name = key.strip().lower().replace("-", "_")
    name = _FIELD_ALIASES.get(name, name)
    return name if name in known else key.strip()


def meta_from_mapping(values: dict[str, object]) -> RunMeta:
    """Build :class:`RunMeta` from loose key/values (``--meta K=V``, form fields, a manifest).

    Known keys are typed (integers checked); every other scalar becomes a tag.
    """
    known: dict[str, Any] = {}  # RunMeta's own fields, each checked to its type below
    tags: dict[str, str] = {}
    for given, value in values.items():
        key = field_name(given)
        if value is None:
            continue
        if key == "tags" and isinstance(value, dict):
            tags.update({str(k): str(v) for k, v in value.items()})
        elif key in _INT_FIELDS:
            try:
                if not isinstance(value, str | bytes | SupportsInt | SupportsIndex):
                    raise TypeError(value)
                known[key] = _checked_int(key, int(value))
            except (TypeError, ValueError):
                raise BadInput(f"metadata {key}={value!r} is not an integer") from None
        elif key in _KNOWN and key != "tags":  # a "tags" that is not a mapping is a tag
            known[key] = _checked_text(key, str(value), MAX_TEXT[key])
        elif isinstance(value, (str, int, float, bool)):
            tags[key] = str(value)
    for key, value in tags.items():
        _checked_text("tag key", key, MAX_TAG_KEY)
        _checked_text(key, value, MAX_TAG_VALUE)
    return RunMeta(**known, tags=tags)


def parse_key_values(pairs: list[str], source: str = "metadata") -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}``; ``source`` names the flag or parameter the pairs came
    from (``--meta``, ``query parameter 'tag'``) for the error message."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"{source} expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def manifest_path_for(trace_path: Path) -> Path:
    name = trace_path.name
    for suffix in (".json.gz", ".json", ".sqlite", ".csv"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return trace_path.with_name(name + MANIFEST_SUFFIX)


def load_manifest(trace_path: Path) -> RunMeta:
    """The manifest beside a trace, or empty metadata when there is none."""
    path = manifest_path_for(trace_path)
    if not path.exists():
        return RunMeta()
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{path.name}: manifest is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path.name}: manifest must be a JSON object")
    return meta_from_mapping(data)
