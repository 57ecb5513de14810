"""What the service says when things fail names no host, port, password or server path: a
failed job, a page link under a forged Host, a database outage (a TCP proxy in front of
PostgreSQL is shut), an out-of-date schema, a database that cannot be opened (one line, exit 5)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKENDS, Database
from tests.fixtures import assert_error, run_cli
from tests.robust_server import CLI, SD, LoggedServer, job_row, post, served_behind_proxy, variant
from tracehouse.api.jobs import MAX_ATTEMPTS

# -- item 9: no host, port, password or server path in any answer ---------------------------------


def test_a_failed_job_and_a_page_link_name_no_server_path_or_host(db: Database, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "raw").write_text("a file where the raw store's folder should be")
    srv = LoggedServer(db, data, TRACEHOUSE_MAX_ROWS="2").start()
    try:
        write, read = srv.token("write"), srv.token("read")
        reply = post(srv, SD, write, wait=60)
        body = assert_error(reply, 500)
        job = job_row(db, int(body["error"].split("(job ")[1].split(";")[0]))
        assert job.status == "failed" and job.attempts == MAX_ATTEMPTS
        served = httpx.get(f"{srv.url}/v1/jobs/{job.id}", headers=read).text
        for answer in (reply.text, served):
            assert str(tmp_path) not in answer and "/raw" not in answer, answer
        assert str(data / "raw") in srv.log()  # the operator still learns which path failed
        (data / "raw").unlink()
        run_id = post(srv, variant(tmp_path, 0), write, wait=60).json()["run_id"]
        page = httpx.get(
            f"{srv.url}/v1/runs/{run_id}/breakdown", params={"by": "kernel"}, headers={**read, "Host": "evil.example"}
        )
        link = page.headers["link"]
        assert "evil.example" not in link and link.startswith(f"</v1/runs/{run_id}/breakdown?"), link
    finally:
        srv.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_database_outage_answers_503_naming_no_host_port_or_database(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no host or port to leak and no outage short of its file's removal")
    with served_behind_proxy(tmp_path) as (srv, proxy, db):
        assert httpx.get(f"{srv.url}/v1/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
        proxy.close()
        reply = httpx.get(f"{srv.url}/v1/runs", headers={"Authorization": "Bearer nope"})
        assert_error(reply, 503)
        assert reply.headers["Retry-After"] == "5"  # an outage passes: clients may try again
        for secret in (str(proxy.port), "127.0.0.1", db.engine.url.database):  # the database: this test's own
            assert secret not in reply.text, (secret, reply.text)
        health = httpx.get(f"{srv.url}/healthz")
        assert health.status_code == 503 and str(proxy.port) not in health.text


@pytest.mark.parametrize("backend", BACKENDS)
def test_schema_out_of_date_message_hides_the_password(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite URLs carry no password (the driver refuses one)")
    db = Database(backend, tmp_path)
    from tracehouse.schema.migrate import upgrade

    upgrade(db.engine, "0007")
    try:
        url = db.url.replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@")
        assert url != db.url  # trust auth: the password is accepted and ignored
        out = subprocess.run([*CLI, "runs", "--db", url], capture_output=True, text=True, timeout=60)
        assert out.returncode == 4, out.stderr
        assert "s3cret-pw" not in out.stderr + out.stdout and "postgres:***@" in out.stderr
    finally:
        db.drop()


# -- item 10: a database that cannot be opened is one line, exit 5 --------------------------------


def _unopenable(backend: str, tmp: Path) -> list[str]:
    if backend == "postgresql":  # down (with a password to hide), not a URL, no driver
        return [
            "postgresql://postgres:s3cret-pw@127.0.0.1:1/test",
            "not a url at all",
            "mysql://root:pw@127.0.0.1/test",
        ]
    (tmp / "a_file").write_text("not a folder")
    (tmp / "a_folder").mkdir()
    return [
        f"sqlite:///{tmp / 'a_folder'}",
        f"sqlite:///{tmp / 'a_file' / 'deeper' / 'db.sqlite3'}",
        "sqlite://user:pw@/relative.db",
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_unreachable_database_is_one_line_and_exit_5(backend: str, tmp_path: Path) -> None:
    port = str(socket.create_server(("127.0.0.1", 0)).getsockname()[1])  # nothing answers there
    urls = _unopenable(backend, tmp_path)
    # Every URL through the common path; the first also through upgrade and serve (before uvicorn).
    runs = [(url, ["runs"]) for url in urls] + [(urls[0], ["db", "upgrade"]), (urls[0], ["serve", "--port", port])]
    messages = []
    for url, args in runs:
        env = {"TRACEHOUSE_DATA_DIR": str(tmp_path / "data")}
        if args[0] == "serve":  # the installed entry point, in its own process, once
            out = subprocess.run(
                [*CLI, *args, "--db", url], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
            )
        else:  # main() in this process: the same exit codes and one line, without a start-up each
            out = run_cli(*args, "--db", url, env=env)
        assert out.returncode == 5, (url, args, out.stderr[-3000:])
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out.stderr, lines
        assert "s3cret-pw" not in out.stderr and "pw@" not in out.stderr
        messages.append(lines[0])
    named = "postgres:***@127.0.0.1:1/test" if backend == "postgresql" else str(tmp_path / "a_folder")
    assert named in messages[0], messages  # the database is named, without its password
