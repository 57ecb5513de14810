"""Where an ingest's rows go: one interface, the same steps for every database.

``pipeline.ingest_file`` and ``window_load.store_windowed`` write only through a ``Writer``:
the existing-run lookup by digest, one transaction per trace (``transaction()``: commit on
success, roll back on anything, database errors as ``session_scope`` words them), and inside
it the run, trace, kernel, rollup, memory, sync and counter rows.  What rows those are is
computed once, in ``ingest/rows.py``; a writer only sends them.  Two writers:

- ``writer_sqlalchemy.SqlAlchemyWriter``: any engine (PostgreSQL with ``COPY``, SQLite), the
  ORM for the run and trace rows as before;
- ``writer_sqlite.SqliteWriter``: a SQLite file already at the schema head through the
  standard library's ``sqlite3``, so ``tracehouse ingest`` into it imports no SQLAlchemy
  (its import and the models' declarations cost ~0.25 s, a third of the whole command).

The steps shared by both (kernel rows then their rollups, memory, counter and sync rows) are this
class's own methods, built on the few each writer implements.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import polars as pl

from tracehouse.core.frames import ParsedTrace
from tracehouse.core.meta import RunMeta
from tracehouse.ingest import rows as table_rows

if TYPE_CHECKING:
    from sqlalchemy import Engine


class Writer(ABC):
    """One database's way of storing an ingest's rows (see the module docstring)."""

    @abstractmethod
    def existing(self, sha256: str) -> tuple[int, int] | None:
        """``(run id, trace id)`` of the trace with this digest (of its file or of its content)
        in a run, outside any transaction; None when there is none."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Everything written inside is committed together at the end, or none of it."""

    @abstractmethod
    def symbol_ids(self, names: pl.Series) -> pl.DataFrame:
        """``text, symbol_id`` for every distinct non-null name, inserting the new ones."""

    @abstractmethod
    def insert_run(self, parsed: ParsedTrace, kernels: pl.DataFrame, meta: RunMeta) -> int:
        """The run row (with its model, hardware and tags); its id."""

    @abstractmethod
    def insert_trace(self, run_id: int, parsed: ParsedTrace, **trace_row: Any) -> int:
        """The trace row (``rows.trace_values``' keyword arguments); its id."""

    @abstractmethod
    def insert_rows(self, table: str, rows: pl.DataFrame) -> None:
        """Many rows into ``table`` at once (columns null in every row are left to the database)."""

    @abstractmethod
    def update_run(self, run_id: int, values: dict[str, Any]) -> None:
        """Set the run row's ``values`` (a windowed ingest's totals, known at the end)."""

    @abstractmethod
    def relink_counters(self, run_id: int) -> int:
        """Match the run's stored counter rows to its kernels by name and order, as
        ``ncu_load.relink`` does; how many launches found their kernel."""

    @abstractmethod
    def engine(self) -> Engine:
        """A SQLAlchemy engine on the same database, for what only SQLAlchemy code writes
        (Nsight Compute CSVs)."""

    @abstractmethod
    def close(self) -> None:
        """Let go of the connections this writer opened (the SQLAlchemy writer: the engine's)."""

    def insert_kernels(self, run_id: int, trace_id: int, kernels: pl.DataFrame) -> None:
        """A run's attributed kernels (all of them) and their rollups."""
        self.insert_rollups(run_id, self.insert_kernel_rows(run_id, trace_id, kernels))

    def insert_kernel_rows(self, run_id: int, trace_id: int, kernels: pl.DataFrame) -> pl.DataFrame:
        """The kernel table's rows of ``kernels``, inserted; returned for the rollups (a big trace
        inserts its kernels a window at a time and sums the rollups at the end)."""
        kernels = table_rows.within_integer_columns(kernels)
        symbols = self.symbol_ids(table_rows.kernel_names(kernels))
        rows = table_rows.kernel_table_rows(kernels, symbols, run_id, trace_id)
        self.insert_rows("kernel", rows)
        return rows

    def insert_rollups(self, run_id: int, rows: pl.DataFrame) -> None:
        """The operator, kernel and launch rollups of a run's kernel table rows (all of them)."""
        by_op, by_name = table_rows.rollups(run_id, rows)
        self.insert_rows("operator_rollup", by_op)
        self.insert_rows("kernel_rollup", by_name)
        self.insert_rows("launch_rollup", table_rows.launch_rollup(run_id, rows))

    def insert_memory(self, run_id: int, trace_id: int, rows: pl.DataFrame) -> None:
        """A trace's memory events (``kineto_memory.memory_rows``) into ``memory_event``."""
        if rows.is_empty():
            return
        symbols = self.symbol_ids(rows["cpu_op"])
        self.insert_rows("memory_event", table_rows.memory_table_rows(rows, symbols, run_id, trace_id))

    def store_counters(self, run_id: int, counters: pl.DataFrame) -> int:
        """A CUPTI range-profiler trace's counters as the run's counter rows, linked to its
        kernels (as Nsight Compute's are); how many launches found their kernel."""
        if counters.is_empty():
            return 0
        symbols = self.symbol_ids(counters["kernel_name"])
        self.insert_rows("ncu_metric", table_rows.counter_table_rows(counters, symbols, run_id))
        return self.relink_counters(run_id)

    def insert_sync(self, run_id: int, trace_id: int, rows: pl.DataFrame) -> None:
        """Cross-stream waits (``kineto_sync.sync_rows``) into ``sync_edge``."""
        self.insert_rows("sync_edge", table_rows.sync_table_rows(rows, run_id, trace_id))


def as_writer(target: Engine | Writer) -> Writer:
    """``target`` itself when it is a writer, else the SQLAlchemy writer on that engine."""
    if isinstance(target, Writer):
        return target
    from tracehouse.ingest.writer_sqlalchemy import SqlAlchemyWriter

    return SqlAlchemyWriter(target)


def engine_of(target: Engine | Writer) -> Engine:
    return target.engine() if isinstance(target, Writer) else target
