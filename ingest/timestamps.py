"""Kineto times to integer ns, exactly.

Kineto writes ``ts`` in µs: integers in old traces, three decimals in new ones, and as
absolute epoch µs (``1712195495519689.047``) past float64's precision.  The JSON number's text
is kept by both parse paths and turned into ns here, so every ns digit survives; ``dur`` is
small enough for float64.
"""

from __future__ import annotations

import polars as pl

_MAX_US = (2**63 - 1) // 1000  # the largest µs count whose ns fit in an Int64


def start_and_duration_ns(text: pl.Series, dur: pl.Series, base_ns: int) -> pl.DataFrame:
    """Start and duration in integer ns (null where missing or unreadable).  ``text`` may be
    Int64 already, ``us_text_to_ns`` applied a piece at a time by ``kineto_stream`` (which
    reads the header with the base last, after the events)."""
    start = text if text.dtype == pl.Int64 else us_text_to_ns(text)
    return pl.DataFrame({"start_ns": start + base_ns, "dur_ns": (dur * 1000).round(0).cast(pl.Int64, strict=False)})


def us_text_to_ns(text: pl.Series) -> pl.Series:
    """JSON number text in µs → integer ns, exactly: integer part × 1000 + the first three
    decimals.  Kineto writes at most three decimals and no exponent, which an Int64 or
    Decimal cast parses exactly; anything else takes the general expression."""
    whole = text.cast(pl.Int64, strict=False)  # integer µs: older traces
    if whole.is_between(-_MAX_US, _MAX_US).fill_null(False).all():
        return (whole * 1000).alias("start_ns")
    # A Decimal(38, 3) is stored as the integer value × 1000: exactly the ns.
    fast = text.cast(pl.Decimal(38, 3), strict=False).to_physical().cast(pl.Int64, strict=False)
    decimals = text.str.len_bytes() - text.str.find(".", literal=True) - 1
    slow = fast.is_null() | text.str.contains_any(["e", "E"]) | (decimals > 3).fill_null(False)
    if not slow.any():
        return fast.alias("start_ns")
    general = pl.select(_general_us_text_to_ns(pl.lit(text.filter(slow)))).to_series()
    return fast.scatter(slow.arg_true(), general).alias("start_ns")


def _general_us_text_to_ns(text: pl.Expr) -> pl.Expr:
    """Exponent notation (never seen from Kineto) goes through float64."""
    body = text.str.strip_prefix("-")
    whole = body.str.extract(r"^(\d+)(?:\.\d*)?$").cast(pl.Int64, strict=False)
    frac = body.str.extract(r"^\d+\.(\d{1,3})").str.pad_end(3, "0").cast(pl.Int64, strict=False).fill_null(0)
    approx = (body.cast(pl.Float64, strict=False) * 1000).round(0).cast(pl.Int64, strict=False)
    magnitude = pl.when(whole.is_not_null()).then(whole * 1000 + frac).otherwise(approx)
    return pl.when(text.str.starts_with("-")).then(-magnitude).otherwise(magnitude)
