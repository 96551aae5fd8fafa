"""What the benchmarks share: where they run and the line that says when and how loaded.

Every benchmark runs on a throw-away SQLite file in a temp dir and, when a PostgreSQL
server is given, in a fresh database of its own on that server (dropped and created
again at the start of each run, so a run never sees an earlier run's rows):

    targets(postgres, "openmvno_bench_notices")  # [SQLite Settings, PostgreSQL Settings]

``python bench/run.py --db-prefix`` names those databases (default ``openmvno_bench_``).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from openmvno.config import Settings

PREFIX = "openmvno_bench_"
"""Start of every bench database's name (``run.py --db-prefix`` changes it)."""


def temp_dir(prefix: str = "openmvno-bench-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def sqlite_url(data_dir: Path, name: str = "b.db") -> str:
    return f"sqlite+aiosqlite:///{data_dir / name}"


def bench_settings(database_url: str, data_dir: Path) -> Settings:
    """Development settings (a secret key generated into the throw-away data dir, as
    ``scripts/start`` does) on ``database_url``."""
    return Settings(environment="development", data_dir=data_dir, database_url=database_url)


def sqlite_settings(prefix: str = "openmvno-bench-") -> Settings:
    """Settings on a new SQLite file in a new temp dir (also its data dir)."""
    tmp = temp_dir(prefix)
    return bench_settings(sqlite_url(tmp), tmp)


async def fresh_postgres(url: str, name: str) -> str:
    """Drop and create database ``name`` on the server of ``url``; the new database's URL."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"bench database name {name!r}: letters, digits and _ only")
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def libpq_dsn(url: str) -> str:
    """A SQLAlchemy ``postgresql+asyncpg://`` URL as the plain DSN psql, pgbench and
    asyncpg take."""
    return url.replace("postgresql+asyncpg://", "postgresql://")


def fresh_postgres_url(url: str, name: str) -> str:
    """``fresh_postgres`` for code that is not in an event loop."""
    return asyncio.run(fresh_postgres(url, name))


def targets(postgres: str | None, name: str, *, prefix: str = "openmvno-bench-"
            ) -> list[Settings]:
    """SQLite in a temp dir, and PostgreSQL database ``name`` (fresh) when a server is
    given. Call it outside an event loop."""
    found = [sqlite_settings(prefix)]
    if postgres:
        found.append(bench_settings(fresh_postgres_url(postgres, name), temp_dir(prefix)))
    return found


def each_target(
    postgres: str | None, name: str, prefix: str,
    measure: Callable[[Settings], Coroutine[Any, Any, dict[str, Any]]],
    say: Callable[[dict[str, Any]], str],
) -> list[dict[str, Any]]:
    """``measure`` on each of :func:`targets`, one event loop each; every result gets its
    database, when it was measured and the load average before and after, and ``say``'s
    line is printed as it comes."""
    results = []
    for settings in targets(postgres, name, prefix=prefix):
        before, at = load_average(), now_utc()
        r = asyncio.run(measure(settings))
        r.update(database=database(settings), load_before=before, load_after=load_average(),
                 measured_at=at)
        print(say(r), flush=True)
        results.append(r)
    return results


def database(url_or_settings: str | Settings) -> str:
    """``sqlite`` or ``postgresql``."""
    url = url_or_settings if isinstance(url_or_settings, str) else url_or_settings.database_url
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def machine_cpu_seconds() -> float | None:
    """CPU time the whole machine has spent busy so far (user + nice + system + irq +
    softirq, every core, from ``/proc/stat``); None where there is no such file."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def now_utc() -> str:
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"


def measured_line(results: list[dict[str, Any]]) -> str:
    """When the run was and the machine's load average before → after each database's
    part (results carry ``database``, ``load_before``, ``load_after``, ``measured_at``)."""
    loads = "; ".join(
        f"{r['database']}: {r.get('load_before', '?')} → {r.get('load_after', '?')}"
        for r in results
    )
    when = results[0].get("measured_at") if results else None
    return f"Measured {when or now_utc()}; load average (1, 5, 15 min) before → after: {loads}."


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far, from ``/proc`` (0.0 where
    the process is gone or there is no ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pids(db_name: str) -> list[int]:
    """The PostgreSQL server processes serving connections to database ``db_name`` on this
    machine (their process title: ``postgres: <user> <database> <client> <state>``)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        words = title.split()
        if len(words) >= 3 and words[0] == "postgres:" and words[2] == db_name:
            pids.append(int(proc.name))
    return pids


class CpuMeter:
    """CPU seconds used between :meth:`start` and :meth:`stop` by fixed processes and by
    the backends of a PostgreSQL database (looked up at both ends: a pool may open
    connections meanwhile; a backend that exits in between is not counted)."""

    def __init__(self, pids: list[int], db_name: str | None = None) -> None:
        self.pids = pids
        self.db_name = db_name
        self.used: dict[str, float] = {}
        self._start: tuple[float, dict[int, float]] = (0.0, {})

    def _now(self) -> tuple[float, dict[int, float]]:
        backends = {p: cpu_seconds(p) for p in backend_pids(self.db_name)} if self.db_name else {}
        return sum(cpu_seconds(p) for p in self.pids), backends

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> dict[str, float]:
        """``{"processes": s, "database": s}`` used since :meth:`start`."""
        own, backends = self._now()
        before = self._start[1]
        self.used = {
            "processes": own - self._start[0],
            "database": sum(v - before.get(p, 0.0) for p, v in backends.items()),
        }
        return self.used
