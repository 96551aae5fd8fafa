"""Reads per second and their latency, through a real ``openmvno serve`` process.

    python bench/reads.py [--postgres URL] [--seconds 10] [--rate 500]

For each database (a throw-away SQLite file; PostgreSQL when ``--postgres`` is given, in a
fresh database ``openmvno_bench_reads`` on that server, or ``--db-name``) this loads the
demo operator, starts ``openmvno serve --no-worker`` (development, one process), logs the
demo subscriber in over HTTP and then, against that same process:

* ``wrk`` with 8 connections for ``--seconds`` each on ``/healthz``,
  ``GET /api/v1/lines/{id}/balance`` and ``GET /api/v1/me/lines``: requests per
  second, p50 and p99, and the server's CPU time per request;
* a fixed-rate run at ``--rate`` requests per second on the balance API and on my
  lines, open loop (each request has a planned send time and its latency is counted
  from that time, so a stall that delays later requests counts against them too, as
  wrk2 does): p50, p99 and max.

Needs ``wrk`` (Debian package ``wrk``; ``scripts/bench`` installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fresh_postgres_url, load_average

from openmvno.config import Settings
from openmvno.demo import SUBSCRIBER_PHONE, load_demo
from openmvno.migrate import upgrade

CONNECTIONS = 8
LANGUAGE = "zh-CN"
BENCH_DB = "openmvno_bench_reads"


# --- the server under test ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def prepare(database_url: str, data_dir: Path) -> str:
    """Migrate, load the demo operator; the demo subscriber's password."""
    settings = Settings(environment="development", data_dir=data_dir, database_url=database_url)
    await upgrade(database_url)
    result = await load_demo(settings)
    return next(x.password for x in result.logins if x.role == "subscriber")


def server_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMVNO_")}
    env.update(
        OPENMVNO_ENVIRONMENT="development",
        OPENMVNO_DATA_DIR=str(data_dir),
        OPENMVNO_DATABASE_URL=database_url,
        OPENMVNO_EMBEDDED_WORKER="false",
        OPENMVNO_ACCESS_TOKEN_MINUTES="120",  # noqa: S106 - a lifetime; outlives the run
    )
    return env


@contextlib.contextmanager
def serving(database_url: str, data_dir: Path, *, workers: int = 1,
            log: str = "serve") -> Iterator[tuple[int, int]]:
    """``openmvno serve`` in its own process (``workers`` HTTP processes, output to
    ``data_dir/<log>.log``); yields (port, pid)."""
    port = free_port()
    out = (data_dir / f"{log}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from openmvno.cli import app; app()",
         "serve", "--port", str(port), "--no-worker", "--workers", str(workers)],
        env=server_env(database_url, data_dir),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited with {proc.returncode}; see {out.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def call(port: int, path: str, *, token: str | None = None, body: Any = None) -> Any:
    headers = {"Accept-Language": LANGUAGE}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, headers=headers
    )
    with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
        return json.loads(r.read())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- wrk: as many as 8 connections can do -------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if m is None:
        raise ValueError(f"wrk latency {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": round(float(rps.group(1)), 1),
        "p50_ms": round(_ms(p50.group(1)), 2),
        "p99_ms": round(_ms(p99.group(1)), 2),
        "requests": int(total.group(1)),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def wrk(port: int, pid: int, path: str, token: str | None, seconds: int) -> dict[str, Any]:
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    cmd = [exe, "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency",
           "-H", f"Accept-Language: {LANGUAGE}"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    before = cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    used = cpu_seconds(pid) - before
    result = parse_wrk(out)
    result["cpu_ms_per_request"] = round(used * 1000 / max(result["requests"], 1), 2)
    if result["non_2xx"]:
        raise RuntimeError(f"wrk saw failed requests on {path}:\n{out}")
    return result


# --- open loop at a fixed rate ------------------------------------------------------


async def _one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        raise RuntimeError("response without Content-Length")
    await reader.readexactly(length)
    return status


async def paced(
    port: int, path: str, token: str | None, *, rate: int, seconds: float, warmup: float = 2.0,
    connections: int = 32,
) -> dict[str, Any]:
    """Requests sent on a fixed schedule of ``rate`` per second over keep-alive
    connections; latency counts from the planned send time (no coordinated omission).

    The run stops at its planned end: requests still waiting to be sent then count with
    the time they had waited so far (a lower bound), so a server that cannot keep up
    shows a long tail instead of stretching the run."""
    head = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Accept-Language: {LANGUAGE}"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[float] = asyncio.Queue()
    latencies: list[float] = []
    failures = 0
    total = int((warmup + seconds) * rate)
    start = loop.time() + 0.1
    measure_from = start + warmup
    end = start + warmup + seconds

    async def connection() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                planned = await queue.get()
                status = await _one(reader, writer, request)
                done = loop.time()
                if status != 200:
                    failures += 1
                if planned >= measure_from:
                    latencies.append((done - planned) * 1000)
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    # This process loaded the demo: one of its full collections would stall the sender
    # and count as the server's latency. What it allocates meanwhile is freed anyway.
    gc.collect()
    gc.disable()
    try:
        sent = 0
        while sent < total:
            now = loop.time()
            due = min(total, int((now - start) * rate) + 1)
            while sent < due:
                queue.put_nowait(start + sent / rate)
                sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - loop.time()))
        await asyncio.sleep(max(0.0, end - loop.time()))
    finally:
        gc.enable()
    done_in_time = len(latencies)
    waiting = 0
    stop = loop.time()
    while not queue.empty():
        planned = queue.get_nowait()
        waiting += 1
        if planned >= measure_from:
            latencies.append((stop - planned) * 1000)
    await asyncio.sleep(1.0)  # let the requests in flight finish
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    latencies.sort()
    n = len(latencies)
    return {
        "rate": rate,
        "achieved": round(done_in_time / seconds, 1),
        "p50_ms": round(latencies[n // 2], 2),
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))], 2),
        "max_ms": round(latencies[-1], 2),
        "failures": failures,
        "not_sent": waiting,
    }


# --- one database -------------------------------------------------------------------


def measure(database_url: str, *, seconds: int, rate: int, db_name: str = BENCH_DB
            ) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="openmvno-reads-"))
    name = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    if name == "postgresql":
        database_url = fresh_postgres_url(database_url, db_name)
    password = asyncio.run(prepare(database_url, data_dir))
    result: dict[str, Any] = {"database": name, "load_before": load_average()}
    with serving(database_url, data_dir) as (port, pid):
        token = call(port, "/api/v1/auth/token",
                     body={"login": SUBSCRIBER_PHONE, "password": password})["access_token"]
        mine = call(port, "/api/v1/me/lines", token=token)
        line = next(x for x in mine if x["state"] == "active")
        balance = f"/api/v1/lines/{line['id']}/balance"
        call(port, balance, token=token)  # warm: first request compiles and caches
        paths = {"healthz": ("/healthz", None), "balance": (balance, token),
                 "my_lines": ("/api/v1/me/lines", token)}
        for key, (path, tok) in paths.items():
            result[key] = wrk(port, pid, path, tok, seconds)
            print(f"{name:<10} {key:<9} wrk -c{CONNECTIONS}: {result[key]}", flush=True)
        runs = [(key, rate) for key in ("balance", "my_lines")] + [("balance", rate // 2)]
        result["paced"] = []
        for key, at in runs:
            path, tok = paths[key]
            r = asyncio.run(paced(port, path, tok, rate=at, seconds=seconds))
            result["paced"].append({"request": key, **r})
            print(f"{name:<10} {key:<9} {at}/s open loop: {r}", flush=True)
    result["load_after"] = load_average()
    if name == "sqlite":
        shutil.rmtree(data_dir, ignore_errors=True)
    return result


def run(postgres: str | None, *, seconds: int = 10, rate: int = 500,
        db_name: str = BENCH_DB) -> list[dict[str, Any]]:
    """SQLite, then PostgreSQL (database ``db_name``, fresh) when a server is given."""
    urls = [f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='openmvno-reads-db-')}/reads.db"]
    if postgres:
        urls.append(postgres)
    return [measure(url, seconds=seconds, rate=rate, db_name=db_name) for url in urls]


def markdown(results: list[dict[str, Any]], *, seconds: int, rate: int) -> str:
    """The docs/BENCHMARKS.md section."""
    rows = []
    for r in results:
        h = r["healthz"]["rps"]
        for key, label in (("healthz", "`/healthz`"), ("balance", "balance"),
                           ("my_lines", "my lines")):
            w = r[key]
            ratio = "—" if key == "healthz" else f"{w['rps'] / h:.1%}"
            rows.append(
                f"| {r['database']} | {label} | {w['rps']} | {w['p50_ms']} | {w['p99_ms']} | "
                f"{w['cpu_ms_per_request']} | {ratio} | {w['socket_errors']} |"
            )
    paced_rows = []
    labels = {"balance": "balance", "my_lines": "my lines"}
    for r in results:
        for p in r["paced"]:
            paced_rows.append(
                f"| {r['database']} | {labels[p['request']]} | {p['rate']} | {p['achieved']} | "
                f"{p['p50_ms']} | {p['p99_ms']} | {p['max_ms']} | {p['failures']} | "
                f"{p['not_sent']} |"
            )
    loads = "; ".join(f"{r['database']} {r['load_before']} → {r['load_after']}" for r in results)
    return f"""## Reads through a served process

The demo operator, one `openmvno serve --no-worker` process (development environment,
JSON request log on), the demo subscriber logged in with a bearer token, `Accept-Language:
{LANGUAGE}`. `GET /api/v1/lines/{{id}}/balance` is what the app, SMS `BAL` and USSD ask
most; `GET /api/v1/me/lines` lists the subscriber's lines. `/healthz` of the same process
in the same run is the ceiling: the HTTP stack with no database and no auth.

With `wrk`, {CONNECTIONS} connections, {seconds} s each (CPU is the server process's user +
system time per request):

| database | request | req/s | p50 ms | p99 ms | server CPU ms/req | of `/healthz` | socket errors |
|---|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

At a fixed rate ({rate} requests/s, and half of it for the balance), open loop ({seconds} s
after 2 s warm-up; each request's latency counts from its planned send time, so stalls
are not hidden; requests a server could not keep up with are "not sent"):

| database | request | asked req/s | done req/s | p50 ms | p99 ms | max ms | failed | not sent |
|---|---|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(paced_rows)}

Target: the balance API at ≥ 1,000 req/s per process and p99 < 20 ms at 500 req/s on
both databases. The load generators run on the same machine as the server (load average
before → after: {loads}; measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC).

Reading the numbers: a balance read is two statements on a read-only connection in
autocommit (the bearer token joined to its account; the line joined to its plan, its
owner's wallet and the buckets it shows), with no BEGIN/COMMIT and no write lock; on
SQLite the readers' statements run inline on the event loop instead of on aiosqlite's
thread. What is left is mostly per-request Python in the web stack, not the database:
profiled with py-spy on the served process, FastAPI's dependency resolution (the route,
the caller, the bearer scheme and the session) is the largest single part, then the two
statements' driver work, the JSON request log line, route matching and the middleware
chain. A read costs several times `/healthz`, which has none of these.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("OPENMVNO_BENCH_POSTGRES"))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--db-name", default=BENCH_DB,
                        help="the PostgreSQL database to (re)create for the run")
    args = parser.parse_args()
    results = run(args.postgres, seconds=args.seconds, rate=args.rate, db_name=args.db_name)
    print(markdown(results, seconds=args.seconds, rate=args.rate))


if __name__ == "__main__":
    main()
