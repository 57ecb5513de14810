"""``tracehouse collect``: profile the model suite and write (and optionally ingest) traces.

Register with ``app.command("collect")(collect)``.  This module imports without torch: torch and
the models are imported inside :func:`collect`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from tracehouse.api.cli_common import RetryForOption, upload_and_report
from tracehouse.core.limits import UPLOAD_RETRY_FOR_S

# Sweep knobs -> Knobs field / run setting.  Spelled with - or _ alike (image-size, image_size),
# as every knob is everywhere (`tracehouse sweep`, REST ?knob=, --filter, --meta).
_SWEEP_KEYS = {
    "image_size": "image_size",
    "resolution": "image_size",
    "frames": "frames",
    "steps": "steps",
    "denoising_steps": "steps",
    "batch": "batch",
    "decode_tokens": "decode_tokens",
    "text_length": "text_length",
    "attention": "attention",
    "attention_backend": "attention",
    "dtype": "dtype",
    "model": "model",
}
_INT_KEYS = {"image_size", "frames", "steps", "batch", "decode_tokens", "text_length"}


def parse_sweep(items: list[str]) -> dict[str, list]:
    """``["image-size=64,128", "frames=8,16"]`` -> ``{"image_size": [64, 128], "frames": [8, 16]}``."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        field = _SWEEP_KEYS.get(key.strip().lower().replace("-", "_"))
        if not sep or field is None:
            knobs = ", ".join(k.replace("_", "-") for k in _SWEEP_KEYS)
            raise typer.BadParameter(
                f"--sweep expects KNOB=V1,V2,... with KNOB one of {knobs} (- or _ alike); got {item!r}"
            )
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
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="llama, stable-diffusion, imagen, muse, parti, make-a-video, phenaki, "
            "diffusion-lm (comma-separated for several)",
        ),
    ] = None,
    suite: Annotated[
        str | None, typer.Option(help="Run every model of the suite at this scale (tiny / paper); overrides --scale")
    ] = None,
    scale: Annotated[str, typer.Option(help="tiny (CPU, seconds) or paper (published sizes)")] = "tiny",
    attention: Annotated[
        str, typer.Option(help="baseline (SDPA math), flash, efficient, auto, or both (baseline then flash)")
    ] = "baseline",
    image_size: Annotated[int | None, typer.Option(help="Output image side in pixels")] = None,
    frames: Annotated[int | None, typer.Option(help="Video frames (make-a-video, phenaki)")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising / parallel-decoding steps")] = None,
    batch: Annotated[int | None, typer.Option(help="Prompts per batch")] = None,
    decode_tokens: Annotated[int | None, typer.Option(help="Tokens to generate (llama, diffusion-lm)")] = None,
    dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16")] = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto")] = "auto",
    out: Annotated[Path, typer.Option(help="Directory for <name>.json.gz and <name>.manifest.json")] = Path("traces"),
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            help="KNOB=V1,V2,... (repeatable; image-size, frames, steps, batch, decode-tokens, "
            "text-length, attention, dtype): runs the grid"
        ),
    ] = None,
    ingest: Annotated[bool, typer.Option("--ingest", help="Ingest each trace into the store")] = False,
    db: Annotated[str | None, typer.Option(help="Database URL for --ingest (default: settings)")] = None,
    text_length: Annotated[int | None, typer.Option(help="Prompt tokens")] = None,
    max_profiled_steps: Annotated[
        int | None,
        typer.Option(
            help="Keep only the first N steps of each denoising / decode loop in the trace "
            "(the rest still runs, unprofiled): bounds long autoregressive decodes"
        ),
    ] = None,
    upload: Annotated[str | None, typer.Option(help="Upload each trace to this tracehouse service URL")] = None,
    token: Annotated[str | None, typer.Option(envvar="TRACEHOUSE_TOKEN", help="Write token for --upload")] = None,
    retry_for: RetryForOption = UPLOAD_RETRY_FOR_S,
    repeat: Annotated[
        int,
        typer.Option(
            min=1,
            help="Profile the whole grid N times over, pass by pass "
            "(files _r1.._rN, tag repeat=i); statistics take the spread of repeats",
        ),
    ] = 1,
    experiment: Annotated[str | None, typer.Option(help="Experiment name every run of this call carries")] = None,
    commit: Annotated[
        str | None,
        typer.Option(help="Git commit of the code under test (default: HEAD of the checkout collect runs in)"),
    ] = None,
    code_version: Annotated[
        str | None, typer.Option(help="Version string of the code under test (default: git describe of the checkout)")
    ] = None,
) -> list[Path]:
    """Profile models of the suite under torch.profiler; write traces + manifests (and ingest them)."""
    torch = _import_torch()
    from tracehouse.collectors.models import SUITE

    device = _check_device(torch, device)
    if upload and not token:  # before minutes of profiling, not after
        raise typer.BadParameter("--upload needs --token (or TRACEHOUSE_TOKEN)")
    if not upload and retry_for != UPLOAD_RETRY_FOR_S:
        raise typer.BadParameter("--retry-for is how long --upload keeps trying; give --upload too")
    if suite is not None:
        scale, models = suite, list(SUITE)
    elif model:
        models = _canonical_models(model.split(","), "--model")
    else:
        raise typer.BadParameter("give --model or --suite")
    grid = parse_sweep(sweep or [])
    if "model" in grid:
        models = _canonical_models(grid.pop("model"), "--sweep model")
    base = {
        "image_size": image_size,
        "frames": frames,
        "steps": steps,
        "batch": batch,
        "decode_tokens": decode_tokens,
        "text_length": text_length,
        "attention": None,
        "dtype": dtype,
    }
    plan = _plan(models, grid, base, _backends(attention))
    from tracehouse.collectors.provenance import provenance

    extra = provenance(commit=commit, version=code_version, experiment=experiment)
    written = _run_plan(
        plan, scale, device, out, max_profiled_steps, _ingester(db) if ingest else None, repeat=repeat, extra=extra
    )
    if upload:
        upload_and_report(written, upload, token or "", [], retry_for_s=retry_for)
    return written


def _import_torch() -> ModuleType:
    from tracehouse.core.errors import BadInput

    try:
        import torch
    except ImportError:
        raise BadInput("collect needs torch: pip install 'tracehouse[collect]'") from None
    return torch


def _check_device(torch: ModuleType, device: str) -> str:
    """``auto`` -> cuda when there is one; a CUDA device this torch cannot use is refused here,
    not as an assertion deep inside torch."""
    from tracehouse.core.errors import BadInput

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise BadInput(f"--device {device!r}: not a device; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInput(f"--device {device}: this torch ({torch.__version__}) sees no CUDA device; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BadInput(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def _canonical_models(names: list[str], flag: str) -> list[str]:
    from tracehouse.collectors.models import canonical

    try:
        return [canonical(m) for m in names if m.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"{flag}: {exc}") from None


def _plan(models: list[str], grid: dict[str, list], base: dict, backends: list[str]) -> list[tuple]:
    """(model, attention, dtype, Knobs) for every grid point, knobs a model ignores dropped,
    deduplicated; an unknown backend or dtype is refused before anything runs."""
    from tracehouse.collectors.models import get_spec
    from tracehouse.collectors.models.base import Knobs
    from tracehouse.collectors.profile import ATTENTION_BACKENDS, DTYPES

    plan: list[tuple] = []
    keys = list(grid)
    for model_name in models:
        spec = get_spec(model_name)
        for combo in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
            setting = {**base, **dict(zip(keys, combo, strict=True))}
            knob_values = {
                k: setting[k] for k in _INT_KEYS if setting[k] is not None and (k in spec.knob_names or k == "batch")
            }
            knobs = Knobs(**knob_values) if knob_values else None
            for backend in [setting["attention"]] if setting["attention"] else backends:
                if backend not in ATTENTION_BACKENDS:
                    raise typer.BadParameter(
                        f"--attention {backend!r}: choose from {', '.join([*ATTENTION_BACKENDS, 'both'])}"
                    )
                if str(setting["dtype"]).lower() not in DTYPES:
                    raise typer.BadParameter(f"--dtype {setting['dtype']!r}: choose from {', '.join(DTYPES)}")
                key = (model_name, backend, setting["dtype"], knobs)
                if key not in plan:
                    plan.append(key)
    return plan


def _ingester(db: str | None) -> Callable[[Path], int]:
    """Ingest each trace as soon as it is written (``--ingest``), into the ``--db`` database."""
    from tracehouse.api.cli_common import load_settings, open_engine
    from tracehouse.ingest.pipeline import ingest_file

    engine, raw_dir = open_engine(db), load_settings().raw_dir()
    return lambda trace: ingest_file(engine, trace, None, raw_dir=raw_dir).run_id


def _run_plan(
    plan: list[tuple],
    scale: str,
    device: str,
    out: Path,
    max_profiled_steps: int | None,
    ingest: Callable[[Path], int] | None,
    *,
    repeat: int = 1,
    extra: Mapping[str, object] | None = None,
) -> list[Path]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tracehouse.collectors.profile import collect_one

    written: list[Path] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
        disable=len(plan) < 2,
    ) as progress:
        task = progress.add_task("collect", total=len(plan) * repeat)
        # Repeats run as whole passes over the grid (files end _r1.._rN), not back to back per
        # point: a machine whose load drifts then spreads the drift over every point instead of
        # bending a sweep (measured: back-to-back repeats of a sweep fitted a negative exponent).
        for rep, (model_name, backend, dt, knobs) in itertools.product(range(1, repeat + 1), plan):
            progress.update(task, description=f"{model_name} {scale} {backend}" + (f" #{rep}" if repeat > 1 else ""))
            meta = {**(extra or {}), **({"tags": {"repeat": str(rep)}} if repeat > 1 else {})}
            res = collect_one(
                model_name,
                scale,
                backend,
                knobs=knobs,
                device=device,
                dtype=dt,
                out=out,
                max_profiled_steps=max_profiled_steps,
                name_suffix=f"_r{rep}" if repeat > 1 else "",
                extra_meta=meta,
            )
            written.append(res.trace)
            line = (
                f"{res.trace}  params={res.meta['param_count']:,}  profiled {res.wall_s:.2f}s"
                f"  peak={res.meta.get('peak_memory_bytes', 0) / 2**20:.1f} MiB"
            )
            if ingest is not None:
                line += f"  run_id={ingest(res.trace)}"
            progress.console.print(line, soft_wrap=True)
            progress.advance(task)
    return written
