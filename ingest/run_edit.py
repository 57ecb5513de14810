"""Correcting a run's metadata and tags after ingest (a wrong ``--model``, a missing knob).

Re-ingesting the same trace never changes its run (it is a duplicate, reported as such), so
this is how metadata is fixed; the kernels are untouched.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tracehouse.core.device_specs import device_row
from tracehouse.core.errors import BadInput
from tracehouse.core.meta import RunMeta, meta_from_mapping
from tracehouse.ingest.load import model_id, upsert
from tracehouse.schema.lookups import get_run
from tracehouse.schema.models import Hardware, RunTag

# Run columns a user may set; ``model`` and ``hardware`` are names resolved to their rows.
RUN_FIELDS = (
    "model",
    "hardware",
    "attention_backend",
    "scale",
    "batch",
    "dtype",
    "image_size",
    "frames",
    "denoising_steps",
    "decode_tokens",
    "text_length",
    "param_count",
    "peak_memory_bytes",
    "host",
    "experiment",
    "git_commit",
    "version",
)


def split_fields_and_tags(values: Mapping[str, str]) -> tuple[dict[str, object], dict[str, str | None]]:
    """``KEY=VALUE`` pairs as ``ingest --meta`` reads them: run fields by name, every other key
    a tag.  An empty value clears the field (or removes the tag)."""
    fields: dict[str, object] = {}
    tags: dict[str, str | None] = {}
    for key, value in values.items():
        if key in RUN_FIELDS:
            fields[key] = value or None
        else:
            tags[key] = value or None
    return fields, tags


def edit_run(session: Session, run_id: int, fields: Mapping[str, object], tags: Mapping[str, str | None]) -> None:
    """Set (``None``: clear) run fields and set (``None``: remove) tags, in the caller's transaction."""
    run = get_run(session, run_id)
    unknown = sorted(set(fields) - set(RUN_FIELDS))
    if unknown:
        raise BadInput(
            f"{', '.join(unknown)}: not a run field (one of {', '.join(RUN_FIELDS)}); anything else is a tag"
        )
    typed = meta_from_mapping({k: v for k, v in fields.items() if v is not None})  # checks integers
    for key in fields:
        value = getattr(typed, key)
        if key == "model":
            run.model_id = model_id(session, RunMeta(model=value)) if value else None
        elif key == "hardware":
            run.hardware_id = _hardware_id(session, value) if value else None
        else:
            setattr(run, key, value)
    for key, value in tags.items():
        if not key:
            raise BadInput("a tag needs a name")
        session.execute(delete(RunTag).where(RunTag.run_id == run_id, RunTag.key == key))
        if value is not None:
            session.add(RunTag(run_id=run_id, key=key, value=value))
    session.flush()


def _hardware_id(session: Session, name: str) -> int:
    upsert(session, Hardware.core_table(), device_row(None, name, cpu_only=False), ["name"])
    return session.scalars(select(Hardware.id).where(Hardware.name == name)).one()
