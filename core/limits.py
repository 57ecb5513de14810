"""Size limits on one trace, with their defaults.  Plain constants, no settings machinery: the
ingest path imports these, and the edges (CLI, service) pass the configured values down."""

from __future__ import annotations

DEFAULT_MAX_TRACE_BYTES = 2 * 1024**3
# Kineto JSON gzips about 10-20x; the whole inflated text is held in memory by the reader,
# so the default stays at 1 GiB (about 3 million events) whatever the compressed limit.
INFLATED_RATIO = 16
INFLATED_CEILING = 1024**3


def default_inflated_limit(max_trace_bytes: int) -> int:
    return min(INFLATED_RATIO * max_trace_bytes, INFLATED_CEILING)
