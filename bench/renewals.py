"""The month-end storm: every line due for renewal at once, renewed by worker processes.

    python bench/renewals.py [--postgres URL] [--lines 100000] [--workers 1,2,4]
                             [--sqlite-lines 10000] [--db-name NAME]

For each run a fresh database (PostgreSQL: ``openmvno_bench_renewals`` on the given
server, or ``--db-name``; SQLite: a throw-away file, one worker only) gets ``--lines``
subscribers, each with one active line on a 30-day plan expiring in an hour and
auto-renew on: half funded by the wallet (topped up through the ledger), half by a saved
card at the sandbox provider (``saved_cards`` + the sandbox's own card, which always
succeeds). Then N worker processes (``--workers``) each run the real schedule job
(``renewals.scheduler.run_due``, the job ``openmvno worker`` runs) until nothing is due:
claim a batch (``FOR UPDATE SKIP LOCKED``), charge the card half through
``payments.cards.charge_cards`` (the sandbox's set-based ``charge_saved``, no
transaction open), renew the batch with ``renewals.batch.renew_batch`` (orders, buckets,
expiry, receipts, notices: a fixed number of statements per batch), write the settings
back. Counted: from the moment the workers are told to start until the last one is done;
afterwards every line must have exactly one ``renewal_runs`` row and ``openmvno ledger
check`` must be clean.

**Raw** is the same server's ``pgbench`` single-row ``UPDATE … SET bal = bal - 1`` tps
with as many clients as workers (its table in the bench database), measured in the same
run (SQLite: one ``UPDATE`` per commit through ``sqlite3``, WAL, ``synchronous=NORMAL``).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    fresh_postgres_url,
    libpq_dsn,
    load_average,
    machine_cpu_seconds,
    measured_line,
    now_utc,
)

from openmvno import clock
from openmvno.config import Settings
from openmvno.db import make_engine, make_sessionmaker, unit_of_work
from openmvno.migrate import upgrade

BENCH_DB = "openmvno_bench_renewals"
PRICE = 3000
NO_LOGIN = "!"  # no password hash matches it
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
CHUNK = 5000
BENCH_SECRET = "bench-only-secret-key-0123456789abcdef"  # noqa: S105  every worker the same


async def seed(database_url: str, n: int) -> None:
    """``n`` subscribers with a line due now; even ones pay from the wallet, odd ones by
    a saved sandbox card. Set-based (executemany in chunks), through the ledger."""
    from openmvno.adapters.payments.sandbox_models import SandboxCard
    from openmvno.catalog.models import Plan, PlanKind
    from openmvno.ledger.batch import post_batch
    from openmvno.ledger.models import Bucket, BucketKind, EntryReason
    from openmvno.ledger.service import Posting
    from openmvno.lines.models import Line, LineKind, LineState
    from openmvno.models import Account
    from openmvno.payments.cards import PaymentCustomer, SavedCard
    from openmvno.renewals import schedule
    from openmvno.renewals.models import AutoRenewSetting, Funding

    await upgrade(database_url)
    engine = make_engine(database_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    now = clock.now()
    expires = now + timedelta(hours=1)
    plan_id = uuid.uuid4()
    try:
        async with unit_of_work(sessions) as s:
            await s.execute(insert(Plan).values(
                id=plan_id, code="M30", kind=PlanKind.mixed, name_zh="畅享30天",
                name_en="Enjoy 30 days", price_minor=PRICE, currency="CNY", validity_days=30,
                data_bytes=10 * 1024**3, voice_seconds=6000, sms_count=100, active=True,
                created_at=now, updated_at=now,
            ))
        for start in range(0, n, CHUNK):
            people = range(start, min(n, start + CHUNK))
            accounts = {i: uuid.uuid4() for i in people}
            lines = {i: uuid.uuid4() for i in people}
            wallets = {i: uuid.uuid4() for i in people if i % 2 == 0}
            cards = {i: uuid.uuid4() for i in people if i % 2 == 1}
            base = dict(created_at=now, updated_at=now)
            async with unit_of_work(sessions) as s:
                await s.execute(insert(Account), [
                    {"id": a, "name": f"Subscriber {i}", "phone": f"+86139{i:08d}",
                     "password_hash": NO_LOGIN, "language": "zh-CN" if i % 3 else "en",
                     "failed_logins": 0, "active": True, **base}
                    for i, a in accounts.items()
                ])
                await s.execute(insert(Line), [
                    {"id": lines[i], "kind": LineKind.sim, "iccid": f"8986002{i:012d}",
                     "msisdn": f"+86172{i:08d}", "account_id": a, "state": LineState.active,
                     "plan_id": plan_id, "expires_at": expires, "auto_renew": True,
                     "activated_at": now, "state_changed_at": now, **base}
                    for i, a in accounts.items()
                ])
                await s.execute(insert(Bucket), [
                    {"id": w, "account_id": accounts[i], "kind": BucketKind.money,
                     "currency": "CNY", "valid_from": now, "priority": 100, "initial": 0,
                     "remaining": 0, "reserved": 0, **base}
                    for i, w in wallets.items()
                ])
                await post_batch(s, [
                    Posting(w, accounts[i], PRICE * 2, EntryReason.topup, f"seed:{w}")
                    for i, w in wallets.items()
                ])
                await s.execute(insert(PaymentCustomer), [
                    {"id": uuid.uuid4(), "account_id": accounts[i], "provider": "sandbox",
                     "customer_ref": f"cus_bench_{i}", **base}
                    for i in cards
                ])
                await s.execute(insert(SandboxCard), [
                    {"id": uuid.uuid4(), "token": f"tok_bench_{i}",
                     "customer_ref": f"cus_bench_{i}", "brand": "visa", "last4": "4242",
                     "exp_month": 12, "exp_year": now.year + 4, "charges": "succeed", **base}
                    for i in cards
                ])
                await s.execute(insert(SavedCard), [
                    {"id": c, "account_id": accounts[i], "provider": "sandbox",
                     "customer_ref": f"cus_bench_{i}", "card_ref": f"tok_bench_{i}",
                     "brand": "visa", "last4": "4242", "exp_month": 12,
                     "exp_year": now.year + 4, "is_default": True, **base}
                    for i, c in cards.items()
                ])
                await s.execute(insert(AutoRenewSetting), [
                    {"id": uuid.uuid4(), "line_id": lines[i], "account_id": a, "enabled": True,
                     "funding": Funding.card if i in cards else Funding.wallet,
                     "card_id": cards.get(i), "wallet_fallback": False,
                     "period_key": schedule.period_key(expires), "next_attempt_at": now,
                     "attempts": 0, "last_failure": "", "waiting_for_wallet": False, **base}
                    for i, a in accounts.items()
                ])
        async with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("COMMIT"))
                await conn.execute(text("VACUUM ANALYZE"))
    finally:
        await engine.dispose()


def _settings(database_url: str, data_dir: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=data_dir, db_pool_size=4,
                    secret_key=BENCH_SECRET)  # type: ignore[arg-type]


def _worker(database_url: str, data_dir: str, go: Any, done: Any) -> None:
    async def work() -> tuple[int, float]:
        from openmvno.renewals import scheduler
        from openmvno.runtime import build_runtime

        rt = build_runtime(_settings(database_url, Path(data_dir)))
        try:
            async with unit_of_work(rt.sessions) as s:  # warm the pool
                await s.execute(text("SELECT 1"))
            go.wait()
            started = time.process_time()
            handled = 0
            while True:
                n = await scheduler.run_due(rt)
                if n == 0:
                    break
                handled += n
            return handled, time.process_time() - started
        finally:
            await rt.close()

    done.put(asyncio.run(work()))


async def verify(database_url: str, n: int) -> None:
    from openmvno.ledger import service
    from openmvno.renewals.runs import RenewalRun

    engine = make_engine(database_url, pool_size=1)
    try:
        async with unit_of_work(make_sessionmaker(engine)) as s:
            runs = int(await s.scalar(select(func.count()).select_from(RenewalRun)) or 0)
            distinct = int(await s.scalar(
                select(func.count(func.distinct(RenewalRun.line_id)))) or 0)
            assert runs == distinct == n, f"{runs} renewals of {distinct} lines, {n} due"
            assert await service.check(s) == [], "ledger check found drift"
    finally:
        await engine.dispose()


def storm(database_url: str, workers: int, data_dir: Path) -> tuple[float, float, float | None]:
    """Seconds from the start signal to the last worker's end, the workers' own CPU
    seconds over it, and the whole machine's busy CPU seconds (the workers, the database
    and anything else) over it."""
    ctx = mp.get_context("spawn")
    go, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(database_url, str(data_dir), go, done))
             for _ in range(workers)]
    for p in procs:
        p.start()
    time.sleep(3)  # let every worker import and connect before the clock starts
    busy, started = machine_cpu_seconds(), time.perf_counter()
    go.set()
    answers = [done.get() for _ in procs]
    elapsed = time.perf_counter() - started
    busy_after = machine_cpu_seconds()
    handled = sum(a[0] for a in answers)
    workers_cpu = sum(a[1] for a in answers)
    for p in procs:
        p.join()
        assert p.exitcode == 0, f"a worker failed ({p.exitcode})"
    print(f"  {workers} worker(s): {handled} settings handled in {elapsed:.1f} s", flush=True)
    machine = busy_after - busy if busy is not None and busy_after is not None else None
    return elapsed, workers_cpu, machine


def pgbench_tps(url: str, clients: int, seconds: int = 5) -> float | None:
    """Single-row UPDATE tps (one row per client) with ``pgbench`` on the same server."""
    binary = PGBENCH if Path(PGBENCH).exists() else shutil.which("pgbench")
    if binary is None:
        return None
    dsn = libpq_dsn(url)
    script = Path(tempfile.mkdtemp(prefix="openmvno-pgbench-")) / "update.sql"
    script.write_text(
        "\\set id random(1, 1000)\nUPDATE bench_raw SET bal = bal - 1 WHERE id = :id;\n"
    )
    setup = ("DROP TABLE IF EXISTS bench_raw; CREATE TABLE bench_raw (id int PRIMARY KEY, "
             "bal bigint); INSERT INTO bench_raw SELECT g, 0 FROM generate_series(1, 1000) g;")
    subprocess.run(["psql", dsn, "-q", "-c", setup], check=True, capture_output=True)
    out = subprocess.run(
        [binary, "-n", "-T", str(seconds), "-c", str(clients), "-j", str(clients), "-f",
         str(script), dsn], capture_output=True, text=True, check=True,
    ).stdout
    subprocess.run(["psql", dsn, "-q", "-c", "DROP TABLE bench_raw"], check=False,
                   capture_output=True)
    for line in out.splitlines():
        if line.startswith("tps ="):
            return float(line.split()[2])
    return None


def sqlite_commits(path: Path, seconds: float = 3.0) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, bal INTEGER)")
        conn.execute("INSERT INTO raw VALUES (1, 0)")
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE raw SET bal = bal - 1 WHERE id = 1")
            conn.execute("COMMIT")
            n += 1
        return n / (time.perf_counter() - started)
    finally:
        conn.close()


def measure(database_url: str, *, lines: int, workers: int, db_name: str = BENCH_DB
            ) -> dict[str, Any]:
    name = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    data_dir = Path(tempfile.mkdtemp(prefix="openmvno-bench-renewals-"))
    before, at = load_average(), now_utc()
    if name == "SQLite":
        database_url = f"sqlite+aiosqlite:///{data_dir / 'renewals.db'}"
    else:
        database_url = fresh_postgres_url(database_url, db_name)
    t0 = time.perf_counter()
    asyncio.run(seed(database_url, lines))
    print(f"{name}: {lines:,} lines seeded in {time.perf_counter() - t0:.0f} s", flush=True)
    elapsed, workers_cpu, machine_cpu = storm(database_url, workers, data_dir)
    asyncio.run(verify(database_url, lines))
    raw = (pgbench_tps(database_url, workers) if name == "PostgreSQL"
           else sqlite_commits(data_dir / "raw.db"))
    result = {"database": name, "workers": workers, "lines": lines,
              "seconds": round(elapsed, 1), "per_s": round(lines / elapsed),
              "workers_ms": round(1000 * workers_cpu / lines, 2),
              "rest_ms": round(1000 * (machine_cpu - workers_cpu) / lines, 2)
              if machine_cpu is not None else None,
              "raw": round(raw) if raw else None, "load_before": before,
              "load_after": load_average(), "measured_at": at}
    print(f"{name:<10} {workers} worker(s) {result['per_s']:>8,} renewals/s "
          f"({elapsed:.1f} s)   raw {result['raw'] or 'n/a'} single-row UPDATE tps", flush=True)
    return result


def run(postgres: str | None, *, lines: int = 100_000, workers: tuple[int, ...] = (1, 2, 4),
        sqlite_lines: int = 10_000, db_name: str = BENCH_DB) -> list[dict[str, Any]]:
    """SQLite (one worker), then PostgreSQL with each number of ``workers``, every run in
    a fresh database ``db_name`` on the server."""
    results = [measure("sqlite", lines=sqlite_lines, workers=1)]
    if postgres:
        results += [measure(postgres, lines=lines, workers=w, db_name=db_name)
                    for w in workers]
    return results


TABLE_HEAD = (
    "| database | workers | lines | seconds | renewals/s | raw UPDATE tps | renewals / raw"
    " | CPU ms/renewal, workers | CPU ms/renewal, rest |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def markdown(results: list[dict[str, Any]]) -> str:
    rows = "\n".join(
        f"| {r['database']} | {r['workers']} | {r['lines']:,} | {r['seconds']} |"
        f" {r['per_s']:,} | {r['raw'] if r['raw'] is not None else 'n/a'} |"
        f" {(r['per_s'] / r['raw']) if r['raw'] else 0:.0%} |"
        f" {r.get('workers_ms', 'n/a')} | {r.get('rest_ms') or 'n/a'} |"
        for r in results
    )
    return f"""## Renewal storm

Every line due for renewal at once: one active line per subscriber on a 30-day plan
expiring in an hour, auto-renew on, half paid from the wallet, half by a saved card at
the sandbox provider. N worker processes run the real schedule job
(`renewals.scheduler.run_due`, what `openmvno worker` runs) until nothing is due: claim
a batch of 500 (`FOR UPDATE SKIP LOCKED`), charge the card half through
`payments.cards.charge_cards` (the sandbox's set-based `charge_saved`, outside any
transaction), renew with `renewals.batch.renew_batch` (orders, payments, wallet debits,
buckets, expiry, receipt numbers, provisioning jobs and `renewal_succeeded` notices, a
fixed number of statements per batch), write the settings back. Counted from the start
signal to the last worker's end; afterwards each line has exactly one renewal and
`openmvno ledger check` is clean. **Raw** is the same server's `pgbench` single-row
`UPDATE` tps with as many clients as workers, in the same run (SQLite: one `UPDATE`
per commit through `sqlite3`). Target on PostgreSQL: 100,000 renewals in under 60 s.
**CPU per renewal**: the workers' own CPU time (`time.process_time`, summed) and the
rest of the machine's busy CPU (`/proc/stat`: the database, mostly) over the storm,
divided by the lines.

{TABLE_HEAD}
{rows}

Command: `python bench/renewals.py --postgres URL` (or `scripts/bench --only renewals`;
`--lines 100000 --workers 1,2,4 --sqlite-lines 10000` are the defaults).

{measured_line([{**r, "database": f"{r['database']}, {r['workers']} worker(s)"}
                for r in results])}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres")
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--sqlite-lines", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--db-name", default=BENCH_DB,
                        help="the PostgreSQL database to (re)create for each run")
    args = parser.parse_args()
    workers = tuple(int(w) for w in args.workers.split(","))
    print(markdown(run(args.postgres, lines=args.lines, workers=workers,
                       sqlite_lines=args.sqlite_lines, db_name=args.db_name)))


if __name__ == "__main__":
    main()
