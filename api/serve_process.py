"""``tracehouse serve`` in a child process on a free localhost port, for what needs the real
server in another process: the tests of start-up, signals, SIGKILL and streaming limits, and
the store benchmark (``bench/store.py``).  It lives in the package, not in ``tests/``, because
the benchmark cannot import the tests and both already import the package.

Output goes to a file: a pipe nobody reads fills up after a few hundred access-log lines and
then blocks the server.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def free_port() -> int:
    """A localhost port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServeProcess:
    """``tracehouse serve --db DB_URL --port PORT FLAGS`` with ``env``, its output in ``log``."""

    def __init__(self, db_url: str, log: Path, env: Mapping[str, str], *flags: str, port: int | None = None) -> None:
        self.db_url, self.log, self.env, self.flags = db_url, log, dict(env), flags
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60, *, any_answer: bool = False) -> None:
        """Start and wait for ``/healthz`` to answer 200 (``any_answer``: any status, for a
        server whose database is meant to be away).  A server that exits or does not answer
        in time is stopped, and the error carries the end of its log."""
        command = [sys.executable, "-m", "tracehouse.api.cli", "serve", "--db", self.db_url, "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*command, *self.flags], env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200 or any_answer:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it has not gone after ``timeout_s``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL, as a crash would end it: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None
