"""One catalogue of the columns the table routes return: name, type, unit and meaning.

The OpenAPI document's row schema for every table route is generated from it
(``api.responses.install_openapi``), and ``tests/test_openapi.py`` checks each route's real
answer against what is documented here, so the two cannot drift apart silently.

``catalogue`` holds the shared meanings; one module per route family lists its routes' tables.
"""

from __future__ import annotations

from tracehouse.api.columns import cross_run, experiments, fleet, run_analyses, runs
from tracehouse.api.columns.catalogue import COLUMNS as COLUMNS
from tracehouse.api.columns.catalogue import Column as Column
from tracehouse.api.columns.catalogue import Table as Table

# Keyed by the route's path as the OpenAPI document spells it (GET routes).
TABLES: dict[str, Table] = {
    **runs.TABLES,
    **run_analyses.TABLES,
    **cross_run.TABLES,
    **experiments.TABLES,
    **fleet.TABLES,
}
