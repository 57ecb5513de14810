"""Measured false-alarm rate of ``tracehouse check``: repeats of an unchanged workload checked
against a baseline made of other repeats of it.  Every model × backend group of an experiment
collected with ``collect --repeat N`` is split every way into a baseline of ``--baseline-size``
repeats and the rest as the checked runs; a try is an alarm when ``check`` flags any key.

    python bench/false_alarms.py --db sqlite:///store.sqlite3 --experiment tiny-r5 [--baseline-size 3]
"""

from __future__ import annotations

import argparse
import itertools
import json

import polars as pl
from sqlalchemy import select

from tracehouse.analyses.check import DEFAULT_MIN_SHARE, check
from tracehouse.ingest.baselines import delete_baseline, set_baseline
from tracehouse.schema.db import make_engine, session_scope
from tracehouse.schema.models import Model, Run


def groups(session, experiment: str) -> dict[tuple, list[int]]:  # type: ignore[no-untyped-def]
    rows = session.execute(
        select(Run.id, Model.name, Run.attention_backend)
        .join(Model, Model.id == Run.model_id)
        .where(Run.experiment == experiment)
        .order_by(Run.id)
    ).all()
    out: dict[tuple, list[int]] = {}
    for run_id, model, backend in rows:
        out.setdefault((model, backend), []).append(run_id)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--baseline-size", type=int, default=3)
    p.add_argument("--threshold", type=float, default=0.05)
    p.add_argument("--by", default="operator")
    p.add_argument("--min-share", type=float, default=DEFAULT_MIN_SHARE)
    args = p.parse_args()
    engine = make_engine(args.db)
    tries, alarms, flagged = 0, 0, []
    with session_scope(engine) as session:
        for (model, backend), ids in groups(session, args.experiment).items():
            for base in itertools.combinations(ids, args.baseline_size):
                new = [r for r in ids if r not in base]
                if not new:
                    continue
                set_baseline(session, "_false_alarm_probe", list(base))
                frame = check(session, new, "_false_alarm_probe", args.by, args.threshold, args.min_share)
                hits = frame.filter(pl.col("regressed"))["key"].to_list()
                tries += 1
                if hits:
                    alarms += 1
                    flagged.append(
                        {"model": model, "backend": backend, "baseline": list(base), "new": new, "keys": hits}
                    )
        delete_baseline(session, "_false_alarm_probe")
        session.rollback()  # a measurement: leave the store as it was
    print(
        json.dumps(
            {
                "experiment": args.experiment,
                "baseline_size": args.baseline_size,
                "by": args.by,
                "threshold": args.threshold,
                "min_share": args.min_share,
                "tries": tries,
                "alarms": alarms,
                "rate": alarms / tries if tries else None,
                "flagged": flagged[:10],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
