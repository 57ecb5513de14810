"""A lab's own kernel-name rules: ``rules.toml`` in the data directory (the path comes from
settings, at the edge: ingest itself never reads the environment).

Labs run kernels we have never seen.  Each ``[[rule]]`` maps a pattern on the kernel's base name
(``kernel_names.py``: no template or parameter lists; a case-insensitive regular expression) to
an operator, optionally an attention type::

    [[rule]]
    id = "fused-attn"                 # optional; stored as "user.fused-attn"
    pattern = "^mylab_fused_attn_"
    operator = "attention"
    attention_type = "causal-decode"  # optional
    authoritative = false             # optional: true decides over the enclosing op too

User rules are tried before ours, so they add and override; a rule whose ``id`` is one of ours
(``name.pooling``) replaces that rule in place.  The file is validated as a whole on load: an
error names the file, the rule's line and what is wrong, and nothing is applied.
``tracehouse reingest --all`` applies changed rules to stored runs.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from pathlib import Path

import polars as pl

from tracehouse.core.errors import BadInput
from tracehouse.core.rules import NAME_RULES, NameRule

_KEYS = {"id", "pattern", "operator", "attention_type", "authoritative"}
_LABEL = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")  # fits the 32-character operator column
_RULE_HEADER = re.compile(r"^\s*\[\[\s*rule\s*\]\]")


def name_rules_for(path: Path | None) -> tuple[NameRule, ...]:
    """The name rules in effect: the user's from ``path`` (when it exists), then ours."""
    if path is None or not path.is_file():
        return NAME_RULES
    return merged(load_user_rules(path))


def merged(user: tuple[NameRule, ...]) -> tuple[NameRule, ...]:
    """``user`` first; one with a built-in rule's id replaces that rule where it stands."""
    builtin_ids = {r.id for r in NAME_RULES}
    replacing = {r.id: r for r in user if r.id in builtin_ids}
    return tuple(r for r in user if r.id not in builtin_ids) + tuple(replacing.get(r.id, r) for r in NAME_RULES)


def load_user_rules(path: Path) -> tuple[NameRule, ...]:
    """Parse and validate ``path``; :class:`BadInput` naming the line and rule on any problem."""
    text = path.read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"rule"}
    if unknown:
        raise BadInput(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; write rules as [[rule]] tables")
    tables = doc.get("rule", [])
    if not isinstance(tables, list):
        raise BadInput(f"{path}: 'rule' must be an array of tables ([[rule]])")
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if _RULE_HEADER.match(line)]
    rules, seen = [], set()
    for n, table in enumerate(tables):
        where = f"{path}:{lines[n] if n < len(lines) else '?'}: rule {n + 1}"
        rule = _rule(table, n, where)
        if rule.id in seen:
            raise BadInput(f"{where}: id {rule.id!r} is used twice")
        seen.add(rule.id)
        rules.append(rule)
    return tuple(rules)


def _rule(table: object, n: int, where: str) -> NameRule:
    if not isinstance(table, dict):
        raise BadInput(f"{where}: must be a table")
    if unknown := set(table) - _KEYS:
        raise BadInput(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_KEYS))}")
    for key in ("pattern", "operator"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise BadInput(f"{where}: {key!r} is required and must be a non-empty string")
    _check_pattern(table["pattern"], where)
    for key in ("operator", "attention_type"):
        value = table.get(key)
        if value is not None and not (isinstance(value, str) and _LABEL.match(value)):
            raise BadInput(
                f"{where}: {key} {value!r} must be lower-case letters, digits, '_', '-' or '.', at most 32 characters"
            )
    authoritative = table.get("authoritative", False)
    if not isinstance(authoritative, bool):
        raise BadInput(f"{where}: 'authoritative' must be true or false")
    given = table.get("id")
    if given is not None and not (isinstance(given, str) and _LABEL.match(given)):
        raise BadInput(f"{where}: id {given!r} must be lower-case letters, digits, '_', '-' or '.'")
    rule_id = given if given in {r.id for r in NAME_RULES} else f"user.{given or n + 1}"
    base = NameRule(rule_id, table["operator"], table["pattern"])
    return replace(
        base,
        attention_type=table.get("attention_type"),
        authoritative=authoritative,
        origin=where.rsplit(": rule", 1)[0],
    )


def _check_pattern(pattern: str, where: str) -> None:
    """Compile it as the rules run it (polars' regex engine, case-insensitive)."""
    try:
        pl.Series([""], dtype=pl.String).str.contains(f"(?i){pattern}")
    except pl.exceptions.PolarsError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"{where}: pattern {pattern!r} is not a valid regular expression: {first}") from None
