"""docs/schema.md against the code it describes: every table and column of the models is
documented (and nothing that is gone), every attribution key and every operator a rule can
produce is explained."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO
from tracehouse.core import rules
from tracehouse.core.annotation import ANNOTATION_FIELDS
from tracehouse.schema.models import Base

SCHEMA_DOC = REPO / "docs" / "schema.md"
SECTION = re.compile(r"^### `([a-z_]+)`$", re.MULTILINE)
ROW = re.compile(r"^\| `([a-z_0-9]+)` \|", re.MULTILINE)


def _sections(text: str) -> dict[str, str]:
    """Table name -> the text of its section (up to the next heading)."""
    marks = list(SECTION.finditer(text))
    ends = [m.start() for m in marks[1:]] + [len(text)]
    return {m.group(1): text[m.end() : end] for m, end in zip(marks, ends, strict=True)}


def _attribution_keys(text: str) -> str:
    start = text.index("## Attribution keys")
    return text[start : text.index("## Tables", start)]


def test_every_table_of_the_models_has_a_section_and_no_other() -> None:
    documented = set(_sections(SCHEMA_DOC.read_text()))
    tables = set(Base.metadata.tables)
    assert tables - documented == set(), "tables missing from docs/schema.md"
    assert documented - tables == set(), "docs/schema.md documents tables the models no longer have"


@pytest.mark.parametrize("table", sorted(Base.metadata.tables))
def test_every_column_is_documented_with_a_unit_column(table: str) -> None:
    section = _sections(SCHEMA_DOC.read_text()).get(table, "")
    rows = ROW.findall(section)
    columns = [c.name for c in Base.metadata.tables[table].columns]
    assert set(columns) - set(rows) == set(), f"{table}: columns missing from docs/schema.md"
    assert set(rows) - set(columns) == set(), f"{table}: documented columns the model does not have"
    assert len(rows) == len(set(rows)), f"{table}: a column documented twice"
    assert "| column | type | unit | meaning |" in section


def test_every_attribution_key_and_operator_is_explained() -> None:
    keys = _attribution_keys(SCHEMA_DOC.read_text())
    explained = {
        name for row in re.findall(r"^\| (`[^|]+`) \|", keys, re.MULTILINE) for name in re.findall(r"`([a-z_]+)`", row)
    }
    assert set(ANNOTATION_FIELDS) - explained == set()
    operator_row = next(line for line in keys.splitlines() if line.startswith("| `operator` |"))
    produced = (
        {op for op, *_ in rules.OP_RULES}
        | {op for op, _ in rules.KERNEL_RULES}
        | {op for op, _ in rules.AUTHORITATIVE_KERNEL_RULES}
        | set(rules.KIND_OPERATORS.values())
        | {"other"}
    )
    assert {op for op in produced if f"`{op}`" not in operator_row} == set()
