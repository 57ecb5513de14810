"""CLI for experiments across runs: steps, diff, baselines and the ``check`` CI gate.
Each command is one call to an analysis function (the REST routes in
``api/routes/experiments.py`` make the same calls)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tracehouse.api.cli_analyses import DbOption, FormatOption, show_frame
from tracehouse.api.cli_common import command_group

if TYPE_CHECKING:
    import polars as pl
    from sqlalchemy.orm import Session

ThresholdOption = Annotated[str, typer.Option("--threshold", help="Smallest change that counts, e.g. 5% or 0.05")]


def register(app: typer.Typer) -> None:
    baseline_app = command_group(help="Named baselines (sets of repeat runs) for `check`.", no_args_is_help=True)
    app.add_typer(baseline_app, name="baseline")
    _register_diff(app)
    _register_baselines(baseline_app)
    _register_check(app)
    _register_history(app)


def _register_diff(app: typer.Typer) -> None:
    @app.command()
    def steps(
        run_id: int,
        view: Annotated[str, typer.Option(help="steps | summary | breakdown")] = "steps",
        by: Annotated[str, typer.Option(help="breakdown key: operator | attention_type")] = "operator",
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """A run cut into steps (ProfilerStep#N, denoising / decode steps, prefill): per-step time,
        warm-up steps, steady-state median with interval and throughput (summary), per-step breakdown."""
        from tracehouse.analyses import steps as q
        from tracehouse.core.errors import BadInput

        views = {
            "steps": lambda s: q.run_steps(s, run_id),
            "summary": lambda s: q.steps_summary(s, run_id),
            "breakdown": lambda s: q.step_breakdown(s, run_id, by),
        }
        if view not in views:
            raise BadInput(f"unknown view {view!r}; choose one of {', '.join(views)}")
        show_frame(db, fmt, f"run {run_id} steps ({view})", views[view])

    @app.command("diff")
    def diff_runs(
        a: Annotated[str, typer.Argument(help="Run A, or repeats as 1,2,3")],
        b: Annotated[str, typer.Argument(help="Run B, or repeats as 4,5,6")],
        by: Annotated[str, typer.Option(help="operator | attention_type | kernel | component")] = "operator",
        threshold: ThresholdOption = "5%",
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """What changed from A to B, per key: time, delta, ratio with its interval, shares, status."""
        from tracehouse.analyses.diff import diff
        from tracehouse.analyses.params import fraction, run_id_list

        a_ids, b_ids, thr = run_id_list([a], "A"), run_id_list([b], "B"), fraction(threshold)
        show_frame(
            db,
            fmt,
            f"diff {a} -> {b} by {by}",
            lambda s: diff(s, a_ids, b_ids, by, thr),
            (
                "key",
                "a_ns",
                "b_ns",
                "delta_ns",
                "ratio",
                "ratio_low",
                "ratio_high",
                "a_share",
                "b_share",
                "samples",
                "status",
            ),
        )


def _register_baselines(baseline_app: typer.Typer) -> None:
    @baseline_app.command("set")
    def baseline_set(
        name: str,
        run_ids: Annotated[list[int], typer.Argument(help="Runs (several = repeats)")],
        note: Annotated[str | None, typer.Option(help="What the baseline is")] = None,
        db: DbOption = None,
    ) -> None:
        """Create or replace a baseline."""
        from tracehouse.api.cli_common import open_engine
        from tracehouse.ingest.baselines import set_baseline
        from tracehouse.schema.db import session_scope

        with session_scope(open_engine(db)) as session:
            set_baseline(session, name, run_ids, note)
        typer.echo(f"baseline {name}: runs {', '.join(map(str, run_ids))}")

    @baseline_app.command("list")
    def baseline_list(fmt: FormatOption = "table", db: DbOption = None) -> None:
        """Every baseline and its runs."""
        from tracehouse.analyses.check import list_baselines

        show_frame(db, fmt, "baselines", list_baselines)

    @baseline_app.command("delete")
    def baseline_delete(name: str, db: DbOption = None) -> None:
        """Delete a baseline (its runs stay)."""
        from tracehouse.api.cli_common import open_engine
        from tracehouse.ingest.baselines import delete_baseline
        from tracehouse.schema.db import session_scope

        with session_scope(open_engine(db)) as session:
            delete_baseline(session, name)
        typer.echo(f"baseline {name} deleted")


def _register_check(app: typer.Typer) -> None:
    @app.command()
    def check(
        run_ids: Annotated[list[int], typer.Argument(help="New runs (several = repeats)")],
        baseline: Annotated[str, typer.Option(help="Baseline name (`tracehouse baseline set`)")],
        by: Annotated[str, typer.Option(help="operator | attention_type | kernel | component")] = "operator",
        threshold: ThresholdOption = "5%",
        min_share: Annotated[float, typer.Option(help="Ignore keys below this share of the time")] = 0.05,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """CI gate: exit 0 when nothing regressed beyond the threshold with statistical support
        (the 95% interval of new/baseline above 1 + threshold), 1 when something did."""
        from tracehouse.analyses.check import check as run_check
        from tracehouse.analyses.check import regressions
        from tracehouse.analyses.params import fraction

        thr = fraction(threshold)
        found: list[pl.DataFrame] = []

        def query(session: Session) -> pl.DataFrame:
            frame = run_check(session, run_ids, baseline, by, thr, min_share)
            found.append(frame)
            return frame

        show_frame(
            db,
            fmt,
            f"check {', '.join(map(str, run_ids))} against {baseline}",
            query,
            (
                "key",
                "a_ns",
                "b_ns",
                "ratio",
                "ratio_low",
                "ratio_high",
                "a_share",
                "b_share",
                "samples",
                "status",
                "regressed",
            ),
        )
        lines = regressions(found[0])
        if fmt == "table":
            typer.echo(
                "\n".join(["REGRESSED:", *lines])
                if lines
                else f"ok: nothing regressed beyond {thr:.1%} with statistical support",
                err=True,
            )
        if lines:
            raise typer.Exit(1)


def _register_history(app: typer.Typer) -> None:
    @app.command()
    def history(
        model: str,
        key: Annotated[str, typer.Option(help="total, or an operator / attention type")] = "total",
        metric: Annotated[str, typer.Option(help="time | share")] = "time",
        by: Annotated[str, typer.Option(help="operator | attention_type (what --key names)")] = "operator",
        order: Annotated[str, typer.Option(help="date | commit")] = "date",
        threshold: ThresholdOption = "5%",
        filters: Annotated[list[str] | None, typer.Option("--filter", help="KEY=VALUE (repeatable)")] = None,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """One metric over runs alike in model, knobs and hardware, with change points and the run
        (and commit) where each began."""
        from tracehouse.analyses import history as q
        from tracehouse.analyses.params import fraction, typed_filters

        where, thr = typed_filters(filters or [], "--filter"), fraction(threshold)
        show_frame(
            db,
            fmt,
            f"{model} {key} {metric} history",
            lambda s: q.history(
                s, model, key, metric, by=by, order=order, threshold=thr, min_size=q.MIN_SEGMENT_RUNS, **where
            ),
        )

    @app.command()
    def matrix(
        metric: Annotated[str, typer.Option(help="time | share")] = "share",
        by: Annotated[str, typer.Option(help="operator | attention_type")] = "operator",
        model: Annotated[str | None, typer.Option(help="Only this model")] = None,
        experiment: Annotated[str | None, typer.Option(help="Only this experiment")] = None,
        backend: Annotated[str | None, typer.Option(help="Attention backend")] = None,
        hardware: Annotated[str | None, typer.Option(help="Substring of the device name")] = None,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Runs x operators (time or share): the table behind a heatmap.  JSON and CSV are long form
        (one row per cell); a terminal gets one row per run."""
        from tracehouse.analyses.history import matrix as q

        def query(s: Session) -> pl.DataFrame:
            # An empty value filters nothing.
            cells = q(
                s,
                metric,
                by,
                model=model or None,
                experiment=experiment or None,
                attention_backend=backend or None,
                hardware=hardware or None,
            )
            if fmt != "table" or cells.is_empty():
                return cells
            return cells.pivot(
                on="key",
                index=["run_id", "model", "attention_backend", "experiment"],
                values="value",
                sort_columns=True,
            )

        show_frame(db, fmt, f"runs x {by} ({metric})", query)
