"""`openmvno serve --workers 2` on a fresh data directory: migrates, serves from two
processes that share one database, each with its own outbox worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_with_two_processes_on_a_fresh_data_dir(tmp_path: Path) -> None:
    port = _free_port()
    data_dir = tmp_path / "fresh" / "data"
    # Development: the test reads the code from /dev/outbox, and the two processes share
    # the secret key generated into the data directory.
    env = {**os.environ, "OPENMVNO_ENVIRONMENT": "development",
           "OPENMVNO_ARGON2_TIME_COST": "1", "OPENMVNO_ARGON2_MEMORY_COST": "1024",
           "OPENMVNO_ARGON2_PARALLELISM": "1"}
    env.pop("OPENMVNO_DATABASE_URL", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from openmvno.cli import app; app()", "serve", "--workers", "2",
         "--port", str(port), "--data-dir", str(data_dir)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        r = httpx.post(f"{base}/api/v1/auth/register", timeout=10,
                       json={"name": "Wang Wu", "phone": "13800138100", "password": "Spring-2026"})
        assert r.status_code == 201
        outbox = httpx.get(f"{base}/dev/outbox", headers={"Accept": "application/json"}).json()
        assert outbox["messages"][0]["recipient"] == "+8613800138100"
        assert (data_dir / "openmvno.db").exists()
        deadline = time.monotonic() + 20
        while (tmp_path / "serve.log").read_text().count("worker started") < 2:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
