"""Peak memory per component: the collector's allocator peaks (from the profiler's memory
events) and parameter counts, read back from the manifest; the similarity matrix from the
stored attention shapes; CLI == REST == Python."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from tests.conftest import DATA, Database
from tests.test_suite import _rest
from tracehouse.analyses.memory_peak import memory_peak
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.schema.db import session_scope


def test_peak_is_weights_plus_activations_per_component(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    runs = {
        b: ingest_file(db.engine, DATA / f"sd_tiny_cpu_{b}.json.gz", raw_dir=raw_dir).run_id
        for b in ("baseline", "flash")
    }
    tags = json.loads((DATA / "sd_tiny_cpu_baseline.manifest.json").read_text())["tags"]
    with session_scope(db.engine) as s:
        rows = {r["component"]: r for r in memory_peak(s, runs["baseline"]).to_dicts()}
        flash = memory_peak(s, runs["flash"])
        python = json.loads(json.dumps(memory_peak(s, runs["baseline"]).to_dicts()))
    with db.engine.connect() as conn:
        shapes = conn.execute(
            text(
                "SELECT component, batch, heads, seq_q, seq_kv FROM kernel WHERE run_id = :r"
                " AND operator = 'attention' AND seq_q IS NOT NULL"
            ),
            {"r": runs["baseline"]},
        ).all()
    components = {k.split(".", 1)[1] for k in tags if k.startswith("params.")}
    assert set(rows) == components | {None} and components
    for comp in components:
        row = rows[comp]
        assert row["weight_bytes"] == int(tags[f"params.{comp}"]) * 4  # fp32
        assert row["activation_peak_bytes"] == int(tags[f"peak_activation_bytes.{comp}"])
        assert row["peak_bytes"] == row["weight_bytes"] + row["activation_peak_bytes"]
        largest = max((4 * (b or 1) * (h or 1) * q * kv for c, b, h, q, kv in shapes if c == comp), default=None)
        assert row["similarity_bytes"] == largest
    whole = rows[None]
    assert (
        whole["peak_bytes"]
        == json.loads((DATA / "sd_tiny_cpu_baseline.manifest.json").read_text())["peak_memory_bytes"]
        == int(tags["weight_bytes"]) + int(tags["peak_activation_bytes"])
    )
    assert abs(whole["weight_share"] + whole["activation_share"] - 1) < 1e-12
    assert whole["similarity_bytes"] == max(v["similarity_bytes"] or 0 for v in rows.values()) > 0
    assert set(flash["similarity_bytes"].to_list()) == {0}  # flash never materialises the matrix
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracehouse.api.cli",
            "memory-peak",
            str(runs["baseline"]),
            "--format",
            "json",
            "--db",
            db.url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == python == _rest(db, tmp_path, f"/v1/runs/{runs['baseline']}/memory-peak", {})
