"""CLI subcommands for the paper's questions: each is one call to an analysis function,
rendered like every other table (``--format table|json|csv``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from tracehouse.api.cli_common import DbOption

if TYPE_CHECKING:  # imported by the commands that run a query, not by every CLI start
    import polars as pl
    from sqlalchemy.orm import Session

FormatOption = Annotated[str, typer.Option("--format", help="table | json | csv")]
FilterOption = Annotated[list[str] | None, typer.Option("--filter", help="KEY=VALUE (repeatable)")]


def show_frame(
    db: str | None,
    fmt: str,
    title: str,
    query: Callable[[Session], pl.DataFrame],
    table_columns: tuple[str, ...] | None = None,
) -> None:
    """Render ``query``'s frame; a terminal table shows only ``table_columns`` when given (JSON
    and CSV always carry every column)."""
    from tracehouse.api.cli_common import open_engine
    from tracehouse.api.output import database_caption
    from tracehouse.core.settings import load_settings
    from tracehouse.schema.db import session_scope

    _check_format(fmt)  # before the query too: a typo costs no database work
    with session_scope(open_engine(db), read_only=True) as session:  # a query never writes
        frame = query(session)
    if fmt == "table" and table_columns:
        frame = frame.select(table_columns)
    # Without --db the table says which database it read (the default is easy to mistake).
    source = None if db else database_caption(load_settings().resolved_database_url())
    print_frame(fmt, title, frame, source)


def _check_format(fmt: str) -> None:
    from tracehouse.api.output import FORMATS
    from tracehouse.core.errors import BadInput

    if fmt not in FORMATS:
        raise BadInput(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def register(app: typer.Typer) -> None:
    _register_comparisons(app)
    _register_run_views(app)
    _register_rooflines(app)
    _register_formulas(app)
    _register_suite(app)


def _register_comparisons(app: typer.Typer) -> None:
    """Across runs: pairs, Table II, sweeps, hardware."""

    @app.command()
    def compare(
        baseline: int,
        other: int,
        summary: Annotated[bool, typer.Option(help="End-to-end speedup vs Amdahl")] = False,
        operator: str = "attention",
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Compare two runs: per-operator speedups (Fig 7), or --summary (Table II, Amdahl)."""
        from tracehouse.analyses import compare as c

        show_frame(
            db,
            fmt,
            f"run {other} vs {baseline}",
            lambda s: (
                c.compare_summary(s, baseline, other, operator) if summary else c.compare_runs(s, baseline, other)
            ),
        )

    @app.command()
    def speedups(
        baseline: Annotated[str, typer.Option(help="Backend of the reference runs")] = "baseline",
        other: Annotated[str, typer.Option(help="Backend of the optimised runs")] = "flash",
        model: Annotated[str | None, typer.Option(help="Only this model")] = None,
        hardware: Annotated[str | None, typer.Option(help="Substring of the device name")] = None,
        experiment: Annotated[
            str | None, typer.Option(help="Only this experiment's runs, repeats aggregated (median, 95% interval)")
        ] = None,
        repeats: Annotated[
            bool, typer.Option("--repeats", help="Aggregate every pair's repeats (median, 95% interval)")
        ] = False,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Table II: end-to-end and attention speedup of every stored baseline / flash pair; with
        --experiment or --repeats, medians over repeats with intervals."""
        from tracehouse.analyses.compare import PAIR_KNOBS, backend_speedups
        from tracehouse.analyses.repeats import speedups_over_repeats

        if experiment or repeats:
            show_frame(
                db,
                fmt,
                f"{other} vs {baseline} (Table II, over repeats)",
                lambda s: speedups_over_repeats(
                    s, baseline, other, experiment=experiment, model=model, hardware=hardware
                ),
                (
                    "model",
                    "hardware",
                    *PAIR_KNOBS,
                    "experiment",
                    "repeats",
                    "end_to_end_speedup",
                    "end_to_end_speedup_low",
                    "end_to_end_speedup_high",
                    "operator_speedup",
                    "operator_speedup_low",
                    "operator_speedup_high",
                    "amdahl_speedup",
                    "exceeds_amdahl",
                    "method",
                ),
            )
            return
        # Knobs alike in every row move to the table's caption; those left tell the rows apart.
        show_frame(
            db,
            fmt,
            f"{other} vs {baseline} (Table II)",
            lambda s: backend_speedups(s, baseline, other, model=model, hardware=hardware),
            (
                "model",
                "family",
                "hardware",
                *PAIR_KNOBS,
                "baseline_run_id",
                "other_run_id",
                "end_to_end_speedup",
                "operator_speedup",
                "operator_share",
                "amdahl_speedup",
                "exceeds_amdahl",
            ),
        )

    @app.command()
    def sweep(
        model: str,
        knob: str,
        operator: Annotated[list[str] | None, typer.Option(help="Operators (or total)")] = None,
        filters: FilterOption = None,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Operator time as one knob grows, with the fitted growth exponent (Fig 10, 14)."""
        from tracehouse.analyses import sweep as q
        from tracehouse.analyses.params import typed_filters

        ops = operator or ["attention", "conv"]
        where = typed_filters(filters or [], "--filter")
        show_frame(db, fmt, f"{model} by {knob}", lambda s: q.sweep(s, model, knob, ops, **where))

    @app.command()
    def hardware(
        model: str,
        reference: str = "slowest",
        filters: FilterOption = None,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """The same model and knobs across devices: time, breakdown, speedup."""
        from tracehouse.analyses.hardware_compare import compare_hardware
        from tracehouse.analyses.params import typed_filters

        where = typed_filters(filters or [], "--filter")
        show_frame(db, fmt, f"{model} across hardware", lambda s: compare_hardware(s, model, reference, **where))


def _register_run_views(app: typer.Typer) -> None:
    """One run's shape: sequence lengths, attention types, time, launches, memory."""

    @app.command()
    def sequence(
        run_id: int,
        view: Annotated[str, typer.Option(help="calls | histogram | period")] = "calls",
        weight: Annotated[str, typer.Option(help="histogram weight: count | time")] = "count",
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Attention sequence lengths: every call in order (Fig 8), the histogram (Fig 9), the period."""
        from tracehouse.analyses import sequence as q
        from tracehouse.core.errors import BadInput

        views = {
            "calls": lambda s: q.attention_calls(s, run_id),
            "histogram": lambda s: q.seq_len_histogram(s, run_id, weight),
            "period": lambda s: q.fundamental_period(s, run_id),
        }
        if view not in views:
            raise BadInput(f"unknown view {view!r}; choose one of {', '.join(views)}")
        show_frame(db, fmt, f"run {run_id} {view}", views[view])

    @app.command("temporal-spatial")
    def temporal_spatial(run_id: int, fmt: FormatOption = "table", db: DbOption = None) -> None:
        """Temporal vs spatial attention: time, calls and FLOPs (Fig 12)."""
        from tracehouse.analyses.attention import temporal_vs_spatial

        show_frame(db, fmt, f"run {run_id} attention types", lambda s: temporal_vs_spatial(s, run_id))

    @app.command()
    def utilization(run_id: int, fmt: FormatOption = "table", db: DbOption = None) -> None:
        """Busy vs idle per device; compute vs communication vs memory; overlap (HTA's view)."""
        from tracehouse.analyses.utilization import temporal_breakdown

        show_frame(db, fmt, f"run {run_id} utilization", lambda s: temporal_breakdown(s, run_id))

    @app.command()
    def launches(
        run_id: int,
        by: Annotated[str, typer.Option(help="operator | kernel | attention_type | component")] = "operator",
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Launch overhead: host launch time, queue delay, kernels shorter than their launch."""
        from tracehouse.analyses.launches import launch_overhead

        show_frame(db, fmt, f"run {run_id} launches by {by}", lambda s: launch_overhead(s, run_id, by))

    @app.command("memory-peak")
    def memory_peak(
        run_id: int,
        live: Annotated[bool, typer.Option(help="What was live at the measured peak, per component")] = False,
        device: Annotated[str | None, typer.Option(help="With --live: only this device (cpu, cuda:0 ...)")] = None,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Peak memory per component: weights (params × bytes), activations, the largest similarity matrix."""
        from tracehouse.analyses.memory_peak import memory_peak as peak
        from tracehouse.analyses.memory_timeline import memory_peak_live

        if live:
            show_frame(db, fmt, f"run {run_id} live at the memory peak", lambda s: memory_peak_live(s, run_id, device))
        else:
            show_frame(db, fmt, f"run {run_id} memory peak", lambda s: peak(s, run_id))

    @app.command("memory-timeline")
    def memory_timeline(
        run_id: int,
        points: Annotated[int, typer.Option(help="Time buckets per device (max in each)")] = 200,
        device: Annotated[str | None, typer.Option(help="Only this device (cpu, cuda:0 ...)")] = None,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Allocated bytes over time per device, from the profiler's memory events."""
        from tracehouse.analyses.memory_timeline import memory_timeline as timeline

        show_frame(db, fmt, f"run {run_id} memory timeline", lambda s: timeline(s, run_id, points, device))

    @app.command("memory-model")
    def memory(
        run_id: int,
        latent_factor: int | None = None,
        unet_depth: int | None = None,
        downsample_factor: int = 2,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """The paper's §V similarity-matrix memory next to the run's stored attention shapes."""
        from tracehouse.analyses.memory_model import memory_model_vs_run

        show_frame(
            db,
            fmt,
            f"run {run_id} memory model",
            lambda s: memory_model_vs_run(
                s, run_id, latent_factor=latent_factor, unet_depth=unet_depth, downsample_factor=downsample_factor
            ),
        )


def _register_rooflines(app: typer.Typer) -> None:
    """Rooflines: analytic and Nsight Compute counters."""

    @app.command()
    def roofline(
        run_id: int,
        by: Annotated[str, typer.Option(help="operator | attention_type | kernel")] = "operator",
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """FLOPs, bytes per memory level, intensity and GFLOP/s against the device's peaks
        (Fig 5): Nsight Compute counters where the run has them, analytic costs otherwise."""
        from tracehouse.analyses.roofline import roofline_by

        show_frame(db, fmt, f"run {run_id} roofline by {by}", lambda s: roofline_by(s, run_id, by))

    @app.command()
    def counters(run_id: int, fmt: FormatOption = "table", db: DbOption = None) -> None:
        """Nsight Compute counters per kernel launch: FLOPs, bytes per level, hit rates, bound."""
        from tracehouse.analyses.counters import counter_roofline

        show_frame(db, fmt, f"run {run_id} counters", lambda s: counter_roofline(s, run_id))


def print_frame(fmt: str, title: str, frame: pl.DataFrame, source: str | None = None) -> None:
    """Render a frame made already (the paper's closed-form models need no database);
    ``source`` names the database it was read from, under a table."""
    from tracehouse.api.output import render

    _check_format(fmt)
    typer.echo(render(frame, fmt, title=title, source=source), nl=False)


def _register_formulas(app: typer.Typer) -> None:
    """The paper's closed forms, as REST serves them: Fig 14's FLOPs by frames, §V's memory."""

    @app.command("attention-flops")
    def attention_flops(
        frames: Annotated[list[int], typer.Option("--frames", help="Frame count (repeatable)")],
        height: Annotated[int, typer.Option(help="Token grid height (latent pixels or patches)")],
        width: Annotated[int, typer.Option(help="Token grid width")],
        batch: int = 1,
        heads: int = 1,
        head_dim: int = 64,
        fmt: FormatOption = "table",
    ) -> None:
        """Fig 14: analytic FLOPs of spatial vs temporal attention as the frame count grows."""
        from tracehouse.analyses.attention import attention_flops_by_frames

        print_frame(
            fmt,
            "attention FLOPs by frames (Fig 14)",
            attention_flops_by_frames(frames, height, width, batch=batch, heads=heads, head_dim=head_dim),
        )

    @app.command("memory-formula")
    def memory_formula(
        image_size: Annotated[int, typer.Option(help="Image side, pixels")],
        latent_factor: Annotated[int, typer.Option(help="Pixels per latent pixel (8 for SD)")],
        text_length: Annotated[int, typer.Option(help="Text tokens (cross-attention keys)")],
        unet_depth: Annotated[int, typer.Option(help="Downsampling stages of the UNet")],
        downsample_factor: int = 2,
        bytes_per_element: int = 2,
        heads: int = 1,
        batch: int = 1,
        fmt: FormatOption = "table",
    ) -> None:
        """§V: the similarity matrices' memory per UNet stage and cumulatively (no run needed)."""
        from tracehouse.analyses.memory_model import similarity_matrix_memory

        print_frame(
            fmt,
            "similarity-matrix memory (§V)",
            similarity_matrix_memory(
                image_size, latent_factor, text_length, unet_depth, downsample_factor, bytes_per_element, heads, batch
            ),
        )


def _register_suite(app: typer.Typer) -> None:
    """Figures across the stored runs: Fig 5 per model, Fig 6 by GPU count."""

    @app.command("model-points")
    def model_points(
        family: Annotated[str | None, typer.Option(help="Only this family (llm / tti / ttv)")] = None,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Fig 5: one point per model × device, FLOPs per byte of model capacity, with the device's ceilings."""
        from tracehouse.analyses.suite import model_points as points

        show_frame(db, fmt, "models on the roofline (Fig 5)", lambda s: points(s, family))

    @app.command()
    def ceilings(fmt: FormatOption = "table", db: DbOption = None) -> None:
        """Fig 5's lines: each stored device's peak FLOP/s per dtype, bandwidth and ridge point."""
        from tracehouse.analyses.suite import device_ceilings

        show_frame(db, fmt, "device ceilings (Fig 5)", device_ceilings)

    @app.command("compute-comm")
    def compute_comm(
        model: Annotated[str | None, typer.Option(help="Only this model")] = None,
        by_world_size: Annotated[bool, typer.Option("--by-world-size", help="Mean shares per GPU count")] = False,
        fmt: FormatOption = "table",
        db: DbOption = None,
    ) -> None:
        """Fig 6: compute vs communication (and exposed communication, idle) by GPU count."""
        from tracehouse.analyses.suite import compute_vs_communication

        show_frame(
            db, fmt, "compute vs communication (Fig 6)", lambda s: compute_vs_communication(s, model, by_world_size)
        )
