"""``tracehouse collect``: profile the model suite and write (and optionally ingest) traces.

Register with ``app.command("collect")(collect)``.  This module imports without torch: torch and
the models are imported inside :func:`collect`.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated

import typer

# Sweep keys (CLI spelling or field name) -> Knobs field / run setting.
_SWEEP_KEYS = {
    "image-size": "image_size", "image_size": "image_size", "resolution": "image_size",
    "frames": "frames", "steps": "steps", "denoising-steps": "steps", "batch": "batch",
    "decode-tokens": "decode_tokens", "decode_tokens": "decode_tokens",
    "text-length": "text_length", "text_length": "text_length",
    "attention": "attention", "dtype": "dtype", "model": "model",
}
_INT_KEYS = {"image_size", "frames", "steps", "batch", "decode_tokens", "text_length"}


def parse_sweep(items: list[str]) -> dict[str, list]:
    """``["image-size=64,128", "frames=8,16"]`` -> ``{"image_size": [64, 128], "frames": [8, 16]}``."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        field = _SWEEP_KEYS.get(key.strip().lower())
        if not sep or field is None:
            raise typer.BadParameter(f"--sweep expects KNOB=V1,V2,... with KNOB one of "
                                     f"{sorted(set(_SWEEP_KEYS))}; got {item!r}")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise typer.BadParameter(f"--sweep {item!r}: no values")
        if field in _INT_KEYS:
            try:
                grid[field] = [int(v) for v in vals]
            except ValueError:
                raise typer.BadParameter(f"--sweep {item!r}: values must be integers") from None
        else:
            grid[field] = vals
    return grid


def _backends(attention: str) -> list[str]:
    if attention == "both":
        return ["baseline", "flash"]
    return [a.strip() for a in attention.split(",") if a.strip()]


def collect(
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="llama, stable-diffusion, imagen, muse, parti, make-a-video, phenaki, "
        "diffusion-lm (comma-separated for several)")] = None,
    suite: Annotated[str | None, typer.Option(
        help="Run every model of the suite at this scale (tiny / paper); overrides --scale")] = None,
    scale: Annotated[str, typer.Option(help="tiny (CPU, seconds) or paper (published sizes)")] = "tiny",
    attention: Annotated[str, typer.Option(
        help="baseline (SDPA math), flash, efficient, auto, or both (baseline then flash)")] = "baseline",
    image_size: Annotated[int | None, typer.Option(help="Output image side in pixels")] = None,
    frames: Annotated[int | None, typer.Option(help="Video frames (make-a-video, phenaki)")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising / parallel-decoding steps")] = None,
    batch: Annotated[int | None, typer.Option(help="Prompts per batch")] = None,
    decode_tokens: Annotated[int | None, typer.Option(help="Tokens to generate (llama, diffusion-lm)")] = None,
    dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16")] = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto")] = "auto",
    out: Annotated[Path, typer.Option(help="Directory for <name>.json.gz and <name>.manifest.json")]
    = Path("traces"),
    sweep: Annotated[list[str] | None, typer.Option(
        help="KNOB=V1,V2,... (repeatable; image-size, frames, steps, batch, decode-tokens, "
        "text-length, attention, dtype): runs the grid")] = None,
    ingest: Annotated[bool, typer.Option("--ingest", help="Ingest each trace into the store")] = False,
    db: Annotated[str | None, typer.Option(help="Database URL for --ingest (default: settings)")] = None,
    text_length: Annotated[int | None, typer.Option(help="Prompt tokens")] = None,
    max_profiled_steps: Annotated[int | None, typer.Option(
        help="Keep only the first N steps of each denoising / decode loop in the trace "
        "(the rest still runs, unprofiled): bounds long autoregressive decodes")] = None,
    upload: Annotated[str | None, typer.Option(help="Upload each trace to this tracehouse service URL")] = None,
    token: Annotated[str | None, typer.Option(envvar="TRACEHOUSE_TOKEN", help="Write token for --upload")] = None,
) -> list[Path]:
    """Profile models of the suite under torch.profiler; write traces + manifests (and ingest them)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    try:
        import torch  # noqa: F401
    except ImportError:
        console.print("[red]collect needs torch: pip install 'tracehouse[collect]'[/red]")
        raise typer.Exit(2) from None
    from tracehouse.collectors.models import SUITE, canonical, get_spec
    from tracehouse.collectors.models.base import Knobs
    from tracehouse.collectors.profile import collect_one

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if suite is not None:
        scale = suite
        models = list(SUITE)
    elif model:
        try:
            models = [canonical(m) for m in model.split(",") if m.strip()]
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    else:
        raise typer.BadParameter("give --model or --suite")

    grid = parse_sweep(sweep or [])
    if "model" in grid:
        models = [canonical(m) for m in grid.pop("model")]
    base = {"image_size": image_size, "frames": frames, "steps": steps, "batch": batch,
            "decode_tokens": decode_tokens, "text_length": text_length,
            "attention": None, "dtype": dtype}
    backends = _backends(attention)

    # The plan: (model, attention, dtype, Knobs) with knobs a model ignores dropped, deduplicated.
    plan: list[tuple[str, str, str, Knobs | None]] = []
    seen: set = set()
    keys = list(grid)
    for model_name in models:
        spec = get_spec(model_name)
        for combo in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
            setting = {**base, **dict(zip(keys, combo))}
            knob_values = {k: setting[k] for k in _INT_KEYS
                           if setting[k] is not None and (k in spec.knob_names or k == "batch")}
            knobs = Knobs(**knob_values) if knob_values else None
            for backend in ([setting["attention"]] if setting["attention"] else backends):
                key = (model_name, backend, setting["dtype"], knobs)
                if key not in seen:
                    seen.add(key)
                    plan.append(key)

    engine = None
    if ingest:
        from tracehouse.core.settings import load_settings
        from tracehouse.ingest.pipeline import ingest_file
        from tracehouse.schema.db import make_engine
        from tracehouse.schema.migrate import ensure_schema

        url = load_settings().resolved_database_url(db)
        engine = make_engine(url)
        ensure_schema(engine, url)

    written: list[Path] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False,
                  disable=len(plan) < 2) as progress:
        task = progress.add_task("collect", total=len(plan))
        for model_name, backend, dt, knobs in plan:
            progress.update(task, description=f"{model_name} {scale} {backend}")
            res = collect_one(model_name, scale, backend, knobs=knobs, device=device, dtype=dt, out=out,
                              max_profiled_steps=max_profiled_steps)
            written.append(res.trace)
            line = (f"{res.trace}  params={res.meta['param_count']:,}  profiled {res.wall_s:.2f}s"
                    f"  peak={res.meta.get('peak_memory_bytes', 0) / 2**20:.1f} MiB")
            if engine is not None:
                result = ingest_file(engine, res.trace, None)
                line += f"  run_id={result.run_id}"
            progress.console.print(line, soft_wrap=True)
            progress.advance(task)
    if upload:
        from tracehouse.client import upload_files

        if not token:
            raise typer.BadParameter("--upload needs --token (or TRACEHOUSE_TOKEN)")
        for r in upload_files(written, upload, token, [], wait=True, progress=True):
            console.print(f"{r['path']}: job {r['job_id']} {r['status']} run_id={r.get('run_id')}")
    return written
