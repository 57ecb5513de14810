"""The annotation convention shared by collectors (which write it) and ingest (which reads it).

A collector wraps each module call in a profiler range (``torch.profiler.record_function``
and, on CUDA, an NVTX range) whose *name* carries the attribution keys::

    th|op=attention|attn=spatial|sq=4096|skv=4096|b=16|h=8|d=40|comp=unet|step=3

The name is the only field that survives every trace format (Kineto ``user_annotation``,
Nsight Systems ``NVTX_EVENTS.text``), so all keys live in it.  Ranges nest: a component
range (``th|comp=unet|step=3``) encloses module ranges; for each kernel the innermost value
of every key wins.  This module has no third-party imports so collectors can use it
without pulling in the ingest stack, and ingest can use it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

PREFIX = "th|"

# Short keys keep range names readable in Perfetto / Nsight; the mapping is the contract.
KEY_TO_FIELD = {
    "op": "operator",
    "attn": "attention_type",
    "sq": "seq_q",
    "skv": "seq_kv",
    "b": "batch",
    "h": "heads",
    "d": "head_dim",
    "comp": "component",
    "step": "step",
}
FIELD_TO_KEY = {v: k for k, v in KEY_TO_FIELD.items()}
INT_FIELDS = frozenset({"seq_q", "seq_kv", "batch", "heads", "head_dim", "step"})

# Vocabularies.  Ingest accepts other values (stored as given) but the analyses know these.
OPERATORS = (
    "attention",
    "conv",
    "linear",
    "groupnorm",
    "layernorm",
    "normalization",
    "softmax",
    "elementwise",
    "embedding",
    "memcpy",
    "memset",
    "communication",
    "other",
)
ATTENTION_TYPES = ("self", "cross", "spatial", "temporal", "causal", "causal-decode")
COMPONENTS = (
    "text_encoder",
    "unet",
    "decoder",
    "super_resolution",
    "transformer",
    "vq_decoder",
    "prefill",
    "decode",
)


@dataclass(frozen=True, slots=True)
class Annotation:
    """Attribution keys carried by one profiler range; ``None`` means "not said here"."""

    operator: str | None = None
    attention_type: str | None = None
    seq_q: int | None = None
    seq_kv: int | None = None
    batch: int | None = None
    heads: int | None = None
    head_dim: int | None = None
    component: str | None = None
    step: int | None = None


ANNOTATION_FIELDS = tuple(f.name for f in fields(Annotation))


def format_annotation(**keys: object) -> str:
    """Build a range name from field names (``operator=``, ``seq_q=`` ...); ``None`` values are left out."""
    parts = [PREFIX.rstrip("|")]
    for name, value in keys.items():
        if name not in FIELD_TO_KEY:
            raise ValueError(f"unknown annotation field {name!r}; known: {sorted(FIELD_TO_KEY)}")
        if value is None:
            continue
        text = str(value)
        if "|" in text or "=" in text:
            raise ValueError(f"annotation value {text!r} may not contain '|' or '='")
        parts.append(f"{FIELD_TO_KEY[name]}={text}")
    return "|".join(parts)


def is_annotation(name: str) -> bool:
    return name.startswith(PREFIX) or name == PREFIX.rstrip("|")


def parse_annotation(name: str) -> Annotation | None:
    """Parse a range name; ``None`` when it is not ours.  Unknown keys and bad integers are ignored
    rather than failing the whole trace: an annotation is a hint, the kernel is still real."""
    if not is_annotation(name):
        return None
    values: dict[str, Any] = {}  # Annotation's fields: ints for INT_FIELDS, text otherwise
    for part in name[len(PREFIX) :].split("|"):
        key, sep, raw = part.partition("=")
        field = KEY_TO_FIELD.get(key)
        if not sep or field is None or raw == "":
            continue
        if field in INT_FIELDS:
            try:
                values[field] = int(raw)
            except ValueError:
                continue
        else:
            values[field] = raw
    return Annotation(**values)
