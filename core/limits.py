"""Size limits on one trace, and how long an upload keeps trying, with their defaults.  Plain
constants, no settings machinery: the ingest path and the upload client import these, and the
edges (CLI, service) pass the configured values down."""

from __future__ import annotations

DEFAULT_MAX_TRACE_BYTES = 2 * 1024**3
# Kineto JSON gzips about 10-20x; the whole inflated text is held in memory by the reader,
# so the default stays at 1 GiB (about 3 million events) whatever the compressed limit.
INFLATED_RATIO = 16
INFLATED_CEILING = 1024**3


def default_inflated_limit(max_trace_bytes: int) -> int:
    return min(INFLATED_RATIO * max_trace_bytes, INFLATED_CEILING)


# How long an upload keeps sending a request the server answers 503 with Retry-After (a
# database restart or fail-over, a transaction rolled back for a concurrent one), and the
# shortest and longest single wait it accepts from that header ("Retry-After: 0" must not
# become a loop of requests as fast as they go).
UPLOAD_RETRY_FOR_S = 120.0
MIN_RETRY_AFTER_S = 0.5
MAX_RETRY_AFTER_S = 30.0
# How often a job poll that cannot reach the server tries again: the server that took the
# upload is restarting, and the job waits for it in the database.
RECONNECT_WAIT_S = 1.0
