"""``tracehouse explain`` (and ``/v1/runs/{id}/explain``): why each kernel got its class, and
the time a run leaves in ``other``; and a lab's own rules (``rules.toml``), validated on load,
applied by ``reingest --all`` and listed by ``explain``."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from tests.attribution_docs import Doc
from tests.conftest import SHARED_TRACES, Database
from tests.fixtures import CliResult, assert_error, run_cli
from tracehouse.analyses.breakdown import breakdown
from tracehouse.analyses.explain import explain, explain_rules, explain_summary
from tracehouse.analyses.runs import list_runs
from tracehouse.core.errors import BadInput
from tracehouse.core.kernel_names import rule_name
from tracehouse.core.rules import NAME_RULES
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.ingest.reingest import reingest_run
from tracehouse.ingest.user_rules import load_user_rules, name_rules_for
from tracehouse.schema.db import session_scope
from tracehouse.schema.migrate import upgrade

SHARED = Path(os.environ.get("TRACEHOUSE_SHARED_TRACES") or SHARED_TRACES)
SGEMM = "ampere_sgemm_128x64_nn"
ELEMENTWISE = "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float> >(int, F)"
MYSTERY = "void mylab_tiled_kv_update<128, float>(float*, int)"
MYLAB_RULE = (
    '[[rule]]\nid = "kv"\npattern = "^mylab_tiled_kv"\noperator = "attention"\nattention_type = "causal-decode"\n'
)


def _doc(path: Path) -> Path:
    """One kernel per way of being decided: op, name rule, kind, annotation, nothing."""
    doc = Doc()
    doc.op("aten::mm", ts=0, dur=100)
    doc.kernel(SGEMM, ts=20, dur=40, correlation=doc.launch("cudaLaunchKernel", ts=10, dur=5))
    doc.kernel(ELEMENTWISE, ts=210, dur=10, correlation=doc.launch("cudaLaunchKernel", ts=200, dur=5))
    doc.kernel(
        "Memcpy HtoD (Pinned -> Device)",
        ts=310,
        dur=20,
        correlation=doc.launch("cudaMemcpyAsync", ts=300, dur=5),
        cat="gpu_memcpy",
    )
    doc.op("th|op=attention|attn=spatial", ts=400, dur=100, cat="user_annotation")
    doc.kernel(
        "void my_softmax_like<float>(float*)", ts=420, dur=30, correlation=doc.launch("cudaLaunchKernel", ts=410, dur=5)
    )
    doc.kernel(MYSTERY, ts=610, dur=100, correlation=doc.launch("cudaLaunchKernel", ts=600, dur=5))
    return doc.write(path)


def test_explain_says_what_decided_each_kernel(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    run_id = ingest_file(db.engine, _doc(tmp_path / "e.json.gz"), raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        rows = {r["kernel"]: r for r in explain(s, run_id).iter_rows(named=True)}
        summary = explain_summary(s, run_id).row(0, named=True)
        runs = list_runs(s).row(0, named=True)
        by_op = {r["operator"]: r for r in breakdown(s, run_id, "operator").iter_rows(named=True)}
        only = explain(s, run_id, kernel="SGEMM")
    got = {
        k: (r["operator"], r["attention_type"], r["source"], r["rule"], r["decided_by"], r["kernels"], r["total_ns"])
        for k, r in rows.items()
    }
    assert got == {
        SGEMM: ("linear", None, "op", "op.linear", "aten::mm", 1, 40_000),
        ELEMENTWISE: (
            "elementwise",
            None,
            "kernel_name",
            "name.elementwise",
            "at::native::vectorized_elementwise_kernel",
            1,
            10_000,
        ),
        "Memcpy HtoD (Pinned -> Device)": ("memcpy", None, "kind", None, "memcpy", 1, 20_000),
        "void my_softmax_like<float>(float*)": (
            "attention",
            "spatial",
            "annotation",
            None,
            "th|op=attention|attn=spatial",
            1,
            30_000,
        ),
        MYSTERY: ("other", None, "none", None, None, 1, 100_000),
    }
    assert only["kernel"].to_list() == [SGEMM]
    # The run's time left in ``other``: stored at ingest, shown by explain, runs and breakdown.
    assert (summary["total_ns"], summary["other_ns"], summary["graph_ns"]) == (200_000, 100_000, 0)
    assert summary["other_share"] == pytest.approx(0.5) and summary["by_op_share"] == pytest.approx(0.2)
    assert runs["other_share"] == pytest.approx(0.5) and runs["graph_share"] == 0
    assert by_op["other"]["other_share"] == 1.0 and by_op["linear"]["other_share"] == 0.0


def test_user_rules_apply_at_ingest_and_are_listed(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(MYLAB_RULE + '\n[[rule]]\nid = "name.pooling"\npattern = "^never$"\noperator = "pooling"\n')
    name_rules = name_rules_for(rules_file)
    assert name_rules[0].id == "user.kv" and len(name_rules) == len(NAME_RULES) + 1
    assert next(r for r in name_rules if r.id == "name.pooling").pattern == "^never$"  # replaced in place
    run_id = ingest_file(db.engine, _doc(tmp_path / "e.json.gz"), raw_dir=raw_dir, name_rules=name_rules).run_id
    with session_scope(db.engine) as s:
        row = explain(s, run_id, kernel="mylab").row(0, named=True)
        listed = {r["rule"]: r for r in explain_rules(s, run_id, name_rules).iter_rows(named=True)}
    assert (row["operator"], row["attention_type"], row["source"], row["rule"]) == (
        "attention",
        "causal-decode",
        "kernel_name",
        "user.kv",
    )
    assert (listed["user.kv"]["kernels"], listed["user.kv"]["total_ns"]) == (1, 100_000)
    assert listed["user.kv"]["origin"] == f"{rules_file}:1"
    assert listed["name.linear"]["kernels"] == 0 and listed["op.linear"]["kernels"] == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[rule]]\npattern = "a("\noperator = "linear"\n', "rules.toml:1: rule 1: pattern 'a(' is not a valid"),
        (
            '# lab rules\n\n[[rule]]\npattern = "x"\noperator = "linear"\n[[rule]]\npattern = "y"\n',
            "rules.toml:6: rule 2: 'operator' is required",
        ),
        ('[[rule]]\npattern = "x"\noperator = "Linear Algebra"\n', "operator 'Linear Algebra' must be lower-case"),
        ('[[rule]]\npattern = "x"\noperator = "linear"\ncolour = "red"\n', "unknown key(s) colour"),
        (
            '[[rule]]\nid = "a"\npattern = "x"\noperator = "linear"\n[[rule]]\nid = "a"\npattern = "y"\noperator = "conv"\n',
            "rules.toml:5: rule 2: id 'user.a' is used twice",
        ),
        (
            '[[rule]]\npattern = "x"\noperator = "linear"\nauthoritative = "yes"\n',
            "'authoritative' must be true or false",
        ),
        ("[[rule]\n", "not valid TOML"),
        ("[rules]\nx = 1\n", "unknown top-level key(s) rules"),
    ],
)
def test_a_bad_rules_file_is_refused_naming_the_rule(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(body)
    with pytest.raises(BadInput) as err:
        load_user_rules(path)
    assert message in str(err.value)


def _cli(*args: str, data_dir: Path) -> CliResult:
    return run_cli(*args, env={"TRACEHOUSE_DATA_DIR": str(data_dir)})


def test_cli_reingest_all_applies_the_rules_file_and_explain_lists_it(db: Database, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ingested = _cli("ingest", str(_doc(tmp_path / "e.json.gz")), "--db", db.url, "--json", data_dir=data)
    run_id = orjson.loads(ingested.stdout)[0]["run_id"]
    (data / "rules.toml").write_text(MYLAB_RULE)
    done = _cli("reingest", "--all", "--db", db.url, "--json", data_dir=data)
    [result] = orjson.loads(done.stdout)
    assert (result["reclassified"], result["other_ns_before"], result["other_ns_after"]) == (1, 100_000, 0)
    assert result["changes"] == [
        {
            "kernel": MYSTERY,
            "operator_before": "other",
            "operator_after": "attention",
            "kernels": 1,
            "total_ns": 100_000,
        }
    ]
    listed = orjson.loads(
        _cli("explain", str(run_id), "--rules", "--db", db.url, "--format", "json", data_dir=data).stdout
    )
    assert listed[0]["rule"] == "user.kv" and listed[0]["kernels"] == 1
    with session_scope(db.engine) as s:
        expected = orjson.loads(orjson.dumps(explain(s, run_id).to_dicts()))
    shown = _cli("explain", str(run_id), "--db", db.url, "--format", "json", data_dir=data)
    assert orjson.loads(shown.stdout) == expected
    table = _cli("explain", str(run_id), "--db", db.url, data_dir=data).stdout
    assert "other_share" in table and "user.kv" in table
    (data / "rules.toml").write_text('[[rule]]\npattern = "("\noperator = "x"\n')
    refused = _cli("reingest", "--all", "--db", db.url, data_dir=data)
    assert refused.returncode == 2 and "rules.toml:1: rule 1: pattern '('" in refused.stderr


def test_reingest_reports_the_kernels_the_fbgemm_fix_reclassified(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    """A store built with the old behaviour (mimicked by a rule sending TBE kernels to ``linear``,
    as ``gemm`` inside their argument lists used to) catches up on ``reingest``."""
    trace = SHARED / "kineto" / "a100_record_shapes.json.gz"
    if not trace.is_file():
        pytest.skip(f"shared trace not found at {trace}")
    old = tmp_path / "old.toml"
    old.write_text('[[rule]]\nid = "old-gemm"\npattern = "^split_embedding_backward"\noperator = "linear"\n')
    run_id = ingest_file(db.engine, trace, raw_dir=raw_dir, name_rules=name_rules_for(old)).run_id
    result = reingest_run(db.engine, run_id)
    moved = {(c["operator_before"], c["operator_after"]) for c in result.changes}
    assert result.reclassified > 0 and moved == {("linear", "embedding")}
    assert all(rule_name(c["kernel"]).startswith("split_embedding_backward") for c in result.changes)
    assert sum(c["kernels"] for c in result.changes) == result.reclassified


def test_migration_fills_other_ns_of_stored_runs(empty_db: Database) -> None:
    upgrade(empty_db.engine, "0008")
    with empty_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO run (id, device_kind, kernel_count, total_ns, span_ns, created_at) "
                "VALUES (1, 'gpu', 3, 100, 100, CURRENT_TIMESTAMP), (2, 'gpu', 1, 5, 5, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO operator_rollup (run_id, operator, kernel_count, total_ns) "
                "VALUES (1, 'other', 2, 30), (1, 'linear', 1, 70), (2, 'conv', 1, 5)"
            )
        )
    upgrade(empty_db.engine)
    with empty_db.engine.connect() as conn:
        got = conn.execute(text("SELECT id, other_ns, graph_ns FROM run ORDER BY id")).all()
    assert [tuple(r) for r in got] == [(1, 30, None), (2, 0, None)]


def test_rest_explain_equals_the_function(tmp_path: Path) -> None:
    from tests.fixtures import AppServer

    db = Database("sqlite", tmp_path).migrate()
    data = tmp_path / "data"
    data.mkdir()
    (data / "rules.toml").write_text(MYLAB_RULE)
    srv = AppServer(db, data).start()
    try:
        write, read = srv.token("write"), srv.token("read")
        with _doc(tmp_path / "e.json.gz").open("rb") as fh:
            up = srv.http.post(
                f"{srv.url}/v1/traces", params={"wait": 60}, files={"file": ("e.json.gz", fh)}, headers=write
            ).json()
        run_id = up["run_id"]
        url = f"{srv.url}/v1/runs/{run_id}/explain"
        kernels = srv.http.get(url, headers=read).json()
        summary = srv.http.get(url, params={"view": "summary"}, headers=read).json()
        rules = srv.http.get(url, params={"view": "rules"}, headers=read).json()
        bad = srv.http.get(url, params={"view": "nope"}, headers=read)
    finally:
        srv.stop()
    with session_scope(db.engine) as s:
        assert kernels == orjson.loads(orjson.dumps(explain(s, run_id).to_dicts()))
        assert summary == orjson.loads(orjson.dumps(explain_summary(s, run_id).to_dicts()))
    mine = next(r for r in kernels if r["kernel"] == MYSTERY)
    assert (mine["operator"], mine["rule"]) == ("attention", "user.kv")  # the worker used the data dir's rules
    assert rules[0]["rule"] == "user.kv" and rules[0]["kernels"] == 1
    assert_error(bad, 422)


def test_cpu_only_units_explain_too(db: Database, raw_dir: Path, tmp_path: Path) -> None:
    # A CPU-only trace: units are host ops, each still says what decided it.
    doc = Doc(devices=[])
    doc.op("aten::linear", ts=0, dur=10)
    doc.op("aten::view", ts=20, dur=10)
    run_id = ingest_file(db.engine, doc.write(tmp_path / "cpu.json.gz"), raw_dir=raw_dir).run_id
    with session_scope(db.engine) as s:
        got = explain(s, run_id).select("kernel", "operator", "source", "rule").rows()
    assert sorted(got) == [("aten::linear", "linear", "op", "op.linear"), ("aten::view", "other", "none", None)]
