"""Data a user can manage: one row per run, duplicates said and metadata corrected, tokens that
own their runs and can be revoked, and a run's trace and kernels downloaded.  REST through the
app in process (its worker thread ingests uploads), the CLI as a user runs it."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import polars as pl
import pytest
from sqlalchemy import event, func, select

from tests.conftest import DATA, SHARED_TRACES, Database
from tests.fixtures import CliResult, assert_error, run_cli
from tracehouse.analyses.runs import list_runs
from tracehouse.api.auth import create_token
from tracehouse.core.meta import RunMeta
from tracehouse.core.settings import load_settings
from tracehouse.ingest.pipeline import ingest_file
from tracehouse.ingest.units import ingest_unit, plan_units
from tracehouse.schema.db import session_scope
from tracehouse.schema.models import ApiToken, Kernel, Run, Trace

SD = DATA / "sd_tiny_cpu_baseline.json.gz"
SD_FLASH = DATA / "sd_tiny_cpu_flash.json.gz"
NCU = SHARED_TRACES / "ncu" / "v100_deepcam_fp32_O1_fw"


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    from fastapi.testclient import TestClient

    from tracehouse.api.app import create_app

    settings = load_settings(database_url=db.url, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        yield client


def _token(db: Database, scope: str, name: str | None = None) -> tuple[dict[str, str], int]:
    with session_scope(db.engine) as s:
        token = create_token(s, name or f"lab-{scope}", scope)
        token_id = s.scalars(select(ApiToken.id).order_by(ApiToken.id.desc())).first()
    return {"Authorization": f"Bearer {token}"}, token_id


def _upload(api, headers: dict, name: str, content: bytes, **form: str):  # type: ignore[no-untyped-def]
    return api.post("/v1/traces", params={"wait": 60}, files={"file": (name, content)}, data=form, headers=headers)


def _assert_error(reply, status: int, code: str, says: str = "") -> None:  # type: ignore[no-untyped-def]
    assert_error(reply, status, code=code, contains=says)


def _cli(db: Database, *args: str) -> CliResult:
    return run_cli(*args, "--db", db.url)


def _ncu_files() -> list[Path]:
    if not NCU.is_dir():
        pytest.skip(f"shared ncu traces not found at {NCU}")
    return sorted(NCU.glob("*.csv"))


# --- item 12: one row per run, one lookup ---------------------------------------------------


def test_an_ncu_run_is_listed_once(db: Database, api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = _ncu_files()
    assert len(files) > 1
    [unit] = plan_units(files)
    ncu = ingest_unit(db.engine, unit, RunMeta(hardware="Tesla V100-SXM2-32GB"), raw_dir=tmp_path / "raw")
    timeline = ingest_file(db.engine, SD, raw_dir=tmp_path / "raw")
    read, _ = _token(db, "read")
    reply = api.get("/v1/runs", headers=read)
    assert [r["run_id"] for r in reply.json()] == [ncu.run_id, timeline.run_id]
    assert reply.headers["X-Total-Count"] == "2"
    assert reply.json()[0]["source"] == files[0].name  # the run's first file names it
    with session_scope(db.engine) as s:
        assert list_runs(s)["run_id"].to_list() == [ncu.run_id, timeline.run_id]
    listed = _cli(db, "runs", "--json")
    assert [r["run_id"] for r in orjson.loads(listed.stdout)] == [ncu.run_id, timeline.run_id], listed.stderr
    one = api.get(f"/v1/runs/{ncu.run_id}", headers=read).json()
    assert one["run_id"] == ncu.run_id and len(one["traces"]) == len(files)


def test_one_run_is_one_lookup(db: Database, api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = [ingest_file(db.engine, path, raw_dir=tmp_path / "raw").run_id for path in (SD, SD_FLASH)]
    read, _ = _token(db, "read")
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    engine = api.app.state.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        reply = api.get(f"/v1/runs/{ids[1]}", headers=read)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert reply.json()["run_id"] == ids[1] and reply.json()["attention_backend"] == "flash"
    listing = [s for s in statements if "FROM run" in s and "JOIN" in s]
    assert listing and all("WHERE" in s for s in listing), listing  # never every run to return one
    _assert_error(api.get("/v1/runs/999", headers=read), 404, "not_found", "run 999")


# --- item 13: duplicates said, content dedupe, metadata corrected ------------------------------


def test_the_same_trace_in_another_container_is_the_same_run(db: Database, tmp_path: Path) -> None:
    text = gzip.decompress(SD.read_bytes())
    first = ingest_file(db.engine, SD, raw_dir=tmp_path / "raw")
    variants = {
        "fast.json.gz": gzip.compress(text, 1),
        "plain.json": text,
        "members.json.gz": gzip.compress(text[:999]) + gzip.compress(text[999:]),
    }
    for name, content in variants.items():
        (tmp_path / name).write_bytes(content)
        again = ingest_file(db.engine, tmp_path / name, raw_dir=tmp_path / "raw")
        assert (again.run_id, again.created, again.duplicate_of) == (first.run_id, False, first.run_id), name
    changed = tmp_path / "changed.json.gz"
    changed.write_bytes(gzip.compress(text + b"\n", 1))  # other content: a run of its own
    assert ingest_file(db.engine, changed, raw_dir=tmp_path / "raw").created
    with session_scope(db.engine) as s:
        assert s.scalar(select(func.count()).select_from(Run)) == 2
        assert (
            s.scalar(select(Trace.content_sha256).where(Trace.run_id == first.run_id))
            == __import__("hashlib").sha256(text).hexdigest()
        )
    truncated = tmp_path / "cut.json.gz"
    truncated.write_bytes(gzip.compress(text + b" ")[:-20])
    with pytest.raises(Exception, match="truncated or corrupt gzip"):
        ingest_file(db.engine, truncated, raw_dir=tmp_path / "raw")


def test_reupload_says_duplicate_and_patch_corrects_metadata(db: Database, api) -> None:  # type: ignore[no-untyped-def]
    write, _ = _token(db, "write")
    first = _upload(api, write, SD.name, SD.read_bytes(), model="stable-diffusion").json()
    assert first["status"] == "done" and first["duplicate_of"] is None
    recompressed = gzip.compress(gzip.decompress(SD.read_bytes()), 9)
    again = _upload(api, write, "again.json.gz", recompressed, model="llama")
    assert again.status_code == 200  # ?wait answers a finished job with 200
    assert again.json()["duplicate_of"] == again.json()["run_id"] == first["run_id"]
    job = api.get(f"/v1/jobs/{again.json()['job_id']}", headers=write).json()
    assert job["duplicate_of"] == first["run_id"]  # the job's record says so too
    url = f"/v1/runs/{first['run_id']}"
    assert api.get(url, headers=write).json()["model"] == "stable-diffusion"
    patched = api.patch(
        url, json={"model": "llama", "image_size": None, "batch": 4, "tags": {"lab": "a", "seed": None}}, headers=write
    )
    assert patched.status_code == 200, patched.text
    run = api.get(url, headers=write).json()
    assert (run["model"], run["family"], run["image_size"], run["batch"]) == ("llama", "llm", None, 4)
    assert run["tags"]["lab"] == "a" and "seed" not in run["tags"]
    _assert_error(api.patch(url, json={"modle": "x"}, headers=write), 422, "invalid_request", "modle")
    _assert_error(api.patch(url, json={"batch": "many"}, headers=write), 422, "invalid_request", "batch")
    _assert_error(api.patch("/v1/runs/999", json={"model": "x"}, headers=write), 404, "not_found")


def test_cli_says_duplicate_and_edits_runs(db: Database, tmp_path: Path) -> None:
    first = _cli(db, "ingest", str(SD))
    assert first.returncode == 0 and "duplicate" not in first.stdout, first.stderr
    plain = tmp_path / "plain.json"
    plain.write_bytes(gzip.decompress(SD.read_bytes()))
    again = _cli(db, "ingest", str(plain), "--model", "llama")
    assert again.returncode == 0 and "duplicate of run 1" in again.stdout, again.stderr
    edited = _cli(
        db,
        "runs",
        "edit",
        "1",
        "--model",
        "llama",
        "--meta",
        "image_size=128",
        "--meta",
        "lab=a",
        "--tag",
        "batch=odd",
        "--untag",
        "seed",
    )
    assert edited.returncode == 0, edited.stderr
    with session_scope(db.engine) as s:
        from tracehouse.analyses.runs import run_row, run_tags

        row, tags = run_row(s, 1), run_tags(s, 1)
    assert (row["model"], row["image_size"], row["batch"]) == ("llama", 128, 1)
    assert tags["lab"] == "a" and tags["batch"] == "odd" and "seed" not in tags
    bad = _cli(db, "runs", "edit", "1", "--meta", "image_size=big")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "image_size" in bad.stderr
    missing = _cli(db, "runs", "edit", "7", "--model", "x")
    assert missing.returncode == 3 and "run 7 does not exist" in missing.stderr


# --- item 14: tokens own their runs, admin routes, revocation --------------------------------


def test_only_the_uploading_token_or_admin_changes_a_run(db: Database, api) -> None:  # type: ignore[no-untyped-def]
    lab_a, a_id = _token(db, "write", "lab-a")
    lab_b, _ = _token(db, "write", "lab-b")
    admin, _ = _token(db, "admin")
    ids = [_upload(api, lab_a, path.name, path.read_bytes()).json()["run_id"] for path in (SD, SD_FLASH)]
    with session_scope(db.engine) as s:
        assert set(s.scalars(select(Run.uploaded_by_token_id).where(Run.id.in_(ids)))) == {a_id}
    _assert_error(api.delete(f"/v1/runs/{ids[0]}", headers=lab_b), 403, "forbidden", "admin")
    _assert_error(api.patch(f"/v1/runs/{ids[0]}", json={"model": "x"}, headers=lab_b), 403, "forbidden")
    assert api.patch(f"/v1/runs/{ids[0]}", json={"tags": {"lab": "a"}}, headers=lab_a).status_code == 200
    assert api.delete(f"/v1/runs/{ids[0]}", headers=lab_a).status_code == 204
    assert api.delete(f"/v1/runs/{ids[1]}", headers=admin).status_code == 204
    with session_scope(db.engine) as s:
        assert s.scalar(select(func.count()).select_from(Run)) == 0


def test_tokens_are_listed_and_revoked_by_admin(db: Database, api) -> None:  # type: ignore[no-untyped-def]
    write, write_id = _token(db, "write", "lab-w")
    admin, _ = _token(db, "admin", "ops")
    _assert_error(api.get("/v1/tokens", headers=write), 403, "forbidden", "needs admin")
    _assert_error(api.delete(f"/v1/tokens/{write_id}", headers=write), 403, "forbidden")
    listed = api.get("/v1/tokens", headers=admin).json()
    assert [(t["name"], t["scope"], t["revoked"]) for t in listed] == [
        ("lab-w", "write", False),
        ("ops", "admin", False),
    ]
    assert not any("sha" in key or key == "token" for t in listed for key in t)
    assert api.get("/v1/runs", headers=write).status_code == 200
    assert api.delete(f"/v1/tokens/{write_id}", headers=admin).status_code == 204
    _assert_error(api.get("/v1/runs", headers=write), 401, "unauthorized", "revoked")
    assert [t["revoked"] for t in api.get("/v1/tokens", headers=admin).json()] == [True, False]
    _assert_error(api.delete("/v1/tokens/99", headers=admin), 404, "not_found", "token 99")


def test_cli_lists_and_revokes_tokens(db: Database, api) -> None:  # type: ignore[no-untyped-def]
    read, read_id = _token(db, "read", "lab-r")
    listed = _cli(db, "token", "list", "--format", "json")
    assert [(t["token_id"], t["name"], t["revoked"]) for t in orjson.loads(listed.stdout)] == [
        (read_id, "lab-r", False)
    ]
    assert _cli(db, "token", "revoke", str(read_id)).returncode == 0
    _assert_error(api.get("/v1/runs", headers=read), 401, "unauthorized")
    missing = _cli(db, "token", "revoke", "42")
    assert missing.returncode == 3 and "token 42 does not exist" in missing.stderr


# --- item 15: delete from the CLI, download a trace and kernel rows ---------------------------


def test_cli_deletes_runs(db: Database, tmp_path: Path) -> None:
    run_id = ingest_file(db.engine, SD, raw_dir=tmp_path / "raw").run_id
    gone = _cli(db, "delete", str(run_id))
    assert gone.returncode == 0 and f"deleted run {run_id}" in gone.stdout, gone.stderr
    with session_scope(db.engine) as s:
        assert s.scalar(select(func.count()).select_from(Run)) == 0
        assert s.scalar(select(func.count()).select_from(Kernel)) == 0
    missing = _cli(db, "delete", str(run_id))
    assert missing.returncode == 3 and missing.stderr.startswith("error: run")


def test_download_the_raw_trace(db: Database, api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write, _ = _token(db, "write")
    run_id = _upload(api, write, SD.name, SD.read_bytes()).json()["run_id"]
    reply = api.get(f"/v1/runs/{run_id}/trace", headers=write)
    assert reply.status_code == 200 and reply.content == SD.read_bytes()
    assert reply.headers["content-type"] == "application/gzip"
    assert f'filename="{SD.name}"' in reply.headers["content-disposition"]
    files = _ncu_files()
    [unit] = plan_units(files)
    ncu_run = ingest_unit(db.engine, unit, RunMeta(hardware="V100"), raw_dir=tmp_path / "data" / "raw").run_id
    _assert_error(api.get(f"/v1/runs/{ncu_run}/trace", headers=write), 400, "bad_input", "trace_id")
    first = api.get(f"/v1/runs/{ncu_run}", headers=write).json()["traces"][0]
    csv = api.get(f"/v1/runs/{ncu_run}/trace", params={"trace_id": first["trace_id"]}, headers=write)
    assert csv.headers["content-type"].startswith("text/csv") and csv.content == files[0].read_bytes()
    _assert_error(
        api.get(f"/v1/runs/{run_id}/trace", params={"trace_id": first["trace_id"]}, headers=write), 404, "not_found"
    )
    _assert_error(api.get("/v1/runs/999/trace", headers=write), 404, "not_found")


def test_download_kernel_rows_in_pages(db: Database, api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = ingest_file(db.engine, SD, raw_dir=tmp_path / "raw")
    read, _ = _token(db, "read")
    with session_scope(db.engine) as s:
        run = s.get(Run, result.run_id)
        count, total = run.kernel_count, run.total_ns
    url = f"/v1/runs/{result.run_id}/kernels"
    whole = pl.read_parquet(io.BytesIO(api.get(url, params={"format": "parquet"}, headers=read).content))
    assert whole.height == count and whole["dur_ns"].sum() == total
    assert whole["seq"].to_list() == sorted(whole["seq"].to_list()) and whole["name"].null_count() == 0
    csv = pl.read_csv(io.StringIO(api.get(url, params={"format": "csv"}, headers=read).text))
    assert csv["dur_ns"].to_list() == whole["dur_ns"].to_list()
    page = api.get(url, params={"limit": 100, "offset": 100}, headers=read)
    assert page.headers["X-Total-Count"] == str(count) and page.headers["X-Truncated"] == "true"
    assert [r["seq"] for r in page.json()] == whole["seq"].to_list()[100:200]
    assert "offset=200" in page.headers["Link"]
    _assert_error(api.get("/v1/runs/999/kernels", headers=read), 404, "not_found")


def test_migration_gives_old_traces_their_file_digest_as_content_digest(empty_db: Database) -> None:
    from sqlalchemy import text

    from tracehouse.schema.migrate import upgrade

    upgrade(empty_db.engine, "0008")
    with empty_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO trace (format, sha256, size_bytes, event_count, original_name, raw_path, "
                "status, warning_count, ingested_at) VALUES ('nsys', :sha, 1, 1, 'old.sqlite', 'x', "
                "'ingested', 0, CURRENT_TIMESTAMP)"
            ),
            {"sha": "ab" * 32},
        )
    upgrade(empty_db.engine)
    with session_scope(empty_db.engine) as s:
        assert s.scalar(select(Trace.content_sha256)) == "ab" * 32
