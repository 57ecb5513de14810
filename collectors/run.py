"""``python -m tracehouse.collectors.run --model stable-diffusion --scale tiny --attention flash --out DIR``

A torch-only entry point (no typer app needed); ``tracehouse collect`` is the full CLI.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from tracehouse.collectors.models import SUITE

    p = argparse.ArgumentParser(prog="python -m tracehouse.collectors.run", description=__doc__)
    p.add_argument("--model", action="append", help=f"one of {', '.join(SUITE)} (repeatable)")
    p.add_argument("--suite", choices=["tiny", "paper", "all"], help="every model of the suite")
    p.add_argument("--scale", default="tiny")
    p.add_argument("--attention", default="baseline", help="baseline / flash / efficient / auto / both")
    p.add_argument("--image-size", type=int)
    p.add_argument("--frames", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--decode-tokens", type=int)
    p.add_argument("--text-length", type=int)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path("traces"))
    p.add_argument("--name", help="trace file stem (single run only)")
    p.add_argument(
        "--max-profiled-steps", type=int, help="keep only the first N steps of each denoising/decode loop in the trace"
    )
    args = p.parse_args(argv)

    from tracehouse.collectors.models.base import Knobs
    from tracehouse.collectors.profile import collect_one

    models = list(SUITE) if args.suite else (args.model or [])
    if not models:
        p.error("give --model or --suite")
    scale = args.scale if not args.suite or args.suite == "all" else args.suite
    backends = ["baseline", "flash"] if args.attention == "both" else [args.attention]
    knobs: Knobs | None = Knobs(
        batch=args.batch or 1,
        image_size=args.image_size,
        frames=args.frames,
        steps=args.steps,
        decode_tokens=args.decode_tokens,
        text_length=args.text_length,
    )
    if args.batch is None and all(
        v is None for v in (args.image_size, args.frames, args.steps, args.decode_tokens, args.text_length)
    ):
        knobs = None
    t_all = time.perf_counter()
    for model in models:
        for backend in backends:
            t0 = time.perf_counter()
            res = collect_one(
                model,
                scale,
                backend,
                knobs=knobs,
                device=args.device,
                dtype=args.dtype,
                out=args.out,
                name=args.name if len(models) * len(backends) == 1 else None,
                max_profiled_steps=args.max_profiled_steps,
            )
            size = res.trace.stat().st_size
            print(
                f"{res.trace}  {size / 1024:.0f} KiB  params={res.meta['param_count']:,}  "
                f"profiled {res.wall_s:.2f}s  total {time.perf_counter() - t0:.2f}s",
                flush=True,
            )
    print(f"done in {time.perf_counter() - t_all:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
