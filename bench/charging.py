"""Usage charging: records per second through the whole API path, beside the raw limit.

    python bench/charging.py [--postgres URL] [--lines 100000] [--batches 20]
                             [--batch 10000] [--concurrency 2] [--db-name NAME]
                             [--processes 2] [--no-sqlite] [--scenario spread|hot]
                             [--py-spy PREFIX]

For each database (a throw-away SQLite file; PostgreSQL when ``--postgres`` is given, in a
fresh database ``openmvno_bench_usage`` on that server) this creates ``--lines`` lines,
each with its own account and a data bucket (set-based, through the ledger), a network
peer and its API key, starts ``--processes`` processes of ``openmvno serve --no-worker``
on PostgreSQL (as the README's production deployment runs them, behind a load balancer;
one on SQLite) and sends ``--batches`` batches of ``--batch`` data records to
``POST /api/v1/usage`` over HTTP (``--concurrency`` requests in flight, each on its own
keep-alive connection, the connections dealt out over the processes in turn as a
load balancer sending each to the process with the fewest would), twice:

* **spread**: every record names a random one of all the lines (a batch touches ~9,500
  buckets when there are 100,000 lines);
* **hot**: every record names one of the first 100 lines.

Every record of every batch must come back ``charged``. Beside each rate the bench
reports what it cost in CPU seconds per 10,000 records, read from ``/proc`` while it
ran: for the API the served processes and the database's backends, for raw the bench's
own process and its backend — where the two cores went. What is counted is the whole
path: HTTP, the API key, validation of every record, rating, the record rows, the
ledger (one entry per bucket per batch, the books kept by the database's trigger), and
the answer of every record.

**Raw** is this machine's batched limit measured in the same run on the same database
with the same distribution: per batch one ``INSERT … SELECT FROM unnest(…) ON CONFLICT
(peer, record_id) DO NOTHING RETURNING bucket_id, units`` plus one grouped
``UPDATE buckets … FROM unnest(…)`` of the summed deltas, in one transaction, over
asyncpg on one connection (SQLite: ``executemany`` of the same two statements through
``sqlite3``). Its own two tables, no index beyond the unique key: nothing the product
does is in it (see ../shared/ENVIRONMENT.md).

**Ceiling** bounds what any served process could do with the same statements: this
machine's cores divided by the database's CPU per record while the API ran plus what
validating the records costs (measured here on the same payloads). At that rate the
database and validation alone would keep every core busy, with nothing left for HTTP,
rating, building the statements or answering.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CpuMeter, libpq_dsn
from reads import serving

from openmvno.channels.api.usage import BATCH
from openmvno.db import make_engine, make_sessionmaker, unit_of_work
from openmvno.migrate import upgrade

BENCH_DB = "openmvno_bench_usage"
HOT_LINES = 100
UNITS = 1024  # bytes per record: the buckets never run out
CORES = os.cpu_count() or 1


# --- setup ---------------------------------------------------------------------------


async def fresh_postgres(url: str, name: str = BENCH_DB) -> str:
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


async def seed(database_url: str, lines: int) -> tuple[list[str], str]:
    """``lines`` active lines with an account and a 1 TB data bucket each; a peer's key.
    Returns the lines' numbers (in creation order) and the key."""
    from openmvno.accounts.models import Account
    from openmvno.catalog.models import Plan, PlanKind
    from openmvno.ledger.models import Bucket, BucketKind, EntryReason
    from openmvno.ledger.service import Posting
    from openmvno.lines.models import Line, LineKind, LineState
    from openmvno.usage import peers
    from openmvno.usage.charging import post_postings

    await upgrade(database_url)
    engine = make_engine(database_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    tb = 1024**4
    plan_id = uuid.uuid4()
    async with unit_of_work(sessions) as s:
        s.add(Plan(id=plan_id, code="BENCH-1TB", kind=PlanKind.data, name_zh="压测",
                   name_en="Bench", price_minor=100, currency="CNY", validity_days=365,
                   data_bytes=tb))
        _peer, key = await peers.create(s, name="bench-pgw")
    msisdns = [f"+86150{i:08d}" for i in range(lines)]
    chunk = 10_000
    for start in range(0, lines, chunk):
        ids = range(start, min(start + chunk, lines))
        accounts = [uuid.uuid4() for _ in ids]
        line_ids = [uuid.uuid4() for _ in ids]
        bucket_ids = [uuid.uuid4() for _ in ids]
        async with unit_of_work(sessions) as s:
            await s.execute(insert(Account), [
                {"id": a, "role": "subscriber", "name": f"Bench {i}", "phone": msisdns[i],
                 "password_hash": "x", "language": "zh-CN", "failed_logins": 0, "active": True,
                 "created_at": now, "updated_at": now}
                for a, i in zip(accounts, ids, strict=True)
            ])
            await s.execute(insert(Line), [
                {"id": lid, "kind": LineKind.sim, "iccid": f"89860099{i:011d}",
                 "msisdn": msisdns[i], "account_id": a, "state": LineState.active,
                 "plan_id": plan_id, "expires_at": now + timedelta(days=365),
                 "auto_renew": False, "state_changed_at": now, "created_at": now,
                 "updated_at": now}
                for lid, a, i in zip(line_ids, accounts, ids, strict=True)
            ])
            await s.execute(insert(Bucket), [
                {"id": b, "account_id": a, "line_id": lid, "kind": BucketKind.data,
                 "currency": None, "plan_id": plan_id, "order_id": None,
                 "valid_from": now - timedelta(days=1), "valid_until": now + timedelta(days=365),
                 "priority": 100, "initial": tb, "remaining": 0, "reserved": 0,
                 "created_at": now, "updated_at": now}
                for b, a, lid in zip(bucket_ids, accounts, line_ids, strict=True)
            ])
            await post_postings(s, [
                Posting(b, a, tb, EntryReason.grant, f"bench-grant:{b}")
                for b, a in zip(bucket_ids, accounts, strict=True)
            ])
    await engine.dispose()
    return msisdns, key


# --- through the API -----------------------------------------------------------------


def bodies(msisdns: list[str], *, batches: int, batch: int, hot: bool, tag: str,
           seed_: int) -> list[bytes]:
    rng = random.Random(seed_)
    pool = msisdns[:HOT_LINES] if hot else msisdns
    started = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    out = []
    for b in range(batches):
        records = [
            {"record_id": f"{tag}-{b}-{i}", "msisdn": rng.choice(pool), "type": "data",
             "units": UNITS, "started_at": started}
            for i in range(batch)
        ]
        out.append(orjson.dumps({"records": records}))
    return out


async def through_api(ports: list[int], key: str, payloads: list[bytes],
                      concurrency: int) -> float:
    """Records per second for sending ``payloads`` with ``concurrency`` in flight, each
    request in flight on its own keep-alive connection, the connections dealt out over
    ``ports`` in turn (as a load balancer that sends each connection to the process with
    the fewest)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    records = 0
    headers = {"X-API-Key": key, "Content-Type": "application/json"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal records
        while not queue.empty():
            body = queue.get_nowait()
            r = await client.post("/api/v1/usage", content=body, headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text[:500]}")
            counts = orjson.loads(r.content)["counts"]
            if set(counts) != {"charged"}:
                raise RuntimeError(f"not all charged: {counts}")
            records += counts["charged"]

    limits = httpx.Limits(max_connections=1)
    clients = [
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[i % len(ports)]}", timeout=300,
                          limits=limits)
        for i in range(concurrency)
    ]
    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        elapsed = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
    return records / elapsed


def validation_cpu(payloads: list[bytes]) -> float:
    """CPU seconds per record this process spends validating ``payloads`` as the usage
    route does (pydantic's JSON parser straight into the records): the best of three
    rounds over the first five."""
    sample = payloads[:5]
    records = sum(len(BATCH.validate_json(p)["records"]) for p in sample)
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for p in sample:
            BATCH.validate_json(p)
        best = min(best, (time.process_time() - started) / records)
    return best


def ceiling(cpu_per_10k: dict[str, float], validation: float) -> int | None:
    """The most records/s the API could reach on this machine's cores if its served
    processes spent nothing but validation: cores / (the database's CPU per record for
    the API's own statements + validation's). ``None`` where the database works inside
    the served process (SQLite)."""
    database = cpu_per_10k["database"] / 10_000
    if database == 0:
        return None
    return round(CORES / (database + validation))


# --- the raw limit -------------------------------------------------------------------


def draws(n_buckets: int, *, batches: int, batch: int, hot: bool, seed_: int) -> list[list[int]]:
    rng = random.Random(seed_)
    top = HOT_LINES if hot else n_buckets
    return [[rng.randrange(top) for _ in range(batch)] for _ in range(batches)]


async def raw_postgres(url: str, n_buckets: int, plan: list[list[int]], tag: str,
                       meter: CpuMeter) -> float:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    dsn = libpq_dsn(url)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS raw_usage; DROP TABLE IF EXISTS raw_buckets")
        await conn.execute("CREATE TABLE raw_buckets (id bigint PRIMARY KEY, remaining bigint)")
        await conn.execute(
            "CREATE TABLE raw_usage (peer text, record_id text, bucket_id bigint, units bigint,"
            " UNIQUE (peer, record_id))"
        )
        await conn.execute(
            "INSERT INTO raw_buckets SELECT g, 1099511627776 FROM generate_series(0, $1) g",
            n_buckets - 1,
        )
        await conn.execute("VACUUM ANALYZE raw_buckets")
        insert = await conn.prepare(
            "INSERT INTO raw_usage SELECT 'p', r, b, u FROM unnest($1::text[], $2::bigint[],"
            " $3::bigint[]) AS t(r, b, u) ON CONFLICT (peer, record_id) DO NOTHING"
            " RETURNING bucket_id, units"
        )
        grouped = await conn.prepare(
            "UPDATE raw_buckets SET remaining = remaining - d.u FROM unnest($1::bigint[],"
            " $2::bigint[]) AS d(id, u) WHERE raw_buckets.id = d.id"
        )
        meter.start()
        started = time.perf_counter()
        records = 0
        for b, buckets in enumerate(plan):
            ids = [f"{tag}-{b}-{i}" for i in range(len(buckets))]
            async with conn.transaction():
                rows = await insert.fetch(ids, buckets, [UNITS] * len(buckets))
                sums: dict[int, int] = {}
                for row in rows:
                    sums[row[0]] = sums.get(row[0], 0) + row[1]
                keys = sorted(sums)
                await grouped.fetch(keys, [sums[k] for k in keys])
            records += len(rows)
        elapsed = time.perf_counter() - started
        meter.stop()
        return records / elapsed
    finally:
        await conn.execute("DROP TABLE IF EXISTS raw_usage; DROP TABLE IF EXISTS raw_buckets")
        await conn.close()


def raw_sqlite(path: Path, n_buckets: int, plan: list[list[int]], tag: str,
               meter: CpuMeter) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("DROP TABLE IF EXISTS raw_usage")
        conn.execute("DROP TABLE IF EXISTS raw_buckets")
        conn.execute("CREATE TABLE raw_buckets (id INTEGER PRIMARY KEY, remaining INTEGER)")
        conn.execute("CREATE TABLE raw_usage (peer TEXT, record_id TEXT, bucket_id INTEGER,"
                     " units INTEGER, UNIQUE (peer, record_id))")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO raw_buckets VALUES (?, 1099511627776)",
                         [(i,) for i in range(n_buckets)])
        conn.execute("COMMIT")
        meter.start()
        started = time.perf_counter()
        records = 0
        for b, buckets in enumerate(plan):
            conn.execute("BEGIN IMMEDIATE")
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO raw_usage VALUES ('p', ?, ?, ?) ON CONFLICT DO NOTHING",
                [(f"{tag}-{b}-{i}", k, UNITS) for i, k in enumerate(buckets)],
            )
            records += conn.total_changes - before
            sums: dict[int, int] = {}
            for k in buckets:
                sums[k] = sums.get(k, 0) + UNITS
            conn.executemany("UPDATE raw_buckets SET remaining = remaining - ? WHERE id = ?",
                             [(u, k) for k, u in sorted(sums.items())])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        meter.stop()
        return records / elapsed
    finally:
        conn.execute("DROP TABLE IF EXISTS raw_usage")
        conn.execute("DROP TABLE IF EXISTS raw_buckets")
        conn.close()


# --- one database --------------------------------------------------------------------


def measure(database_url: str, *, lines: int, batches: int, batch: int,
            concurrency: int, db_name: str = BENCH_DB,
            scenarios: tuple[str, ...] = ("spread", "hot"),
            py_spy: str | None = None, processes: int = 1) -> list[dict[str, Any]]:
    name = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    data_dir = Path(tempfile.mkdtemp(prefix="openmvno-bench-usage-"))
    if name == "SQLite":
        database_url = f"sqlite+aiosqlite:///{data_dir / 'usage.db'}"
    else:
        database_url = asyncio.run(fresh_postgres(database_url, db_name))
    msisdns, key = asyncio.run(seed(database_url, lines))
    results = []
    backends = db_name if name == "PostgreSQL" else None
    # SQLite has one writer: the embedded default serves it from one process.
    processes = processes if name == "PostgreSQL" else 1
    with contextlib.ExitStack() as stack:
        # Separate processes, not ``serve --workers N``: those share one listening socket,
        # and whichever wakes first accepts every pending connection — both of the
        # bench's connections often landed in one process while the other idled.
        served = [stack.enter_context(serving(database_url, data_dir, log=f"serve{i}"))
                  for i in range(processes)]
        ports = [port for port, _pid in served]
        for port in ports:
            warm = bodies(msisdns, batches=1, batch=100, hot=False, tag=f"warm{port}", seed_=0)
            asyncio.run(through_api([port], key, warm, 1))
        for scenario in scenarios:
            hot = scenario == "hot"
            payloads = bodies(msisdns, batches=batches, batch=batch, hot=hot, tag=scenario,
                              seed_=1 if hot else 2)
            spies = []
            if py_spy:
                # Each served process's samples during this scenario (raw collapsed stacks).
                for i, (_port, pid) in enumerate(served):
                    out = f"{py_spy}-{name.lower()}-{scenario}-{i}.txt"
                    spies.append(subprocess.Popen(
                        [str(Path(sys.executable).parent / "py-spy"), "record", "-o", out,
                         "-f", "raw", "-r", "200", "-p", str(pid)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    ))
                time.sleep(1.0)
            # CPU of the served processes and of the database's backends (PostgreSQL;
            # SQLite works inside the served process) while the batches are sent.
            api_cpu = CpuMeter([pid for _port, pid in served], backends)
            api_cpu.start()
            try:
                api = asyncio.run(through_api(ports, key, payloads, concurrency))
                api_cpu.stop()
            finally:
                for spy in spies:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(timeout=30)
            plan = draws(lines, batches=batches, batch=batch, hot=hot, seed_=3 if hot else 4)
            raw_cpu = CpuMeter([os.getpid()], backends)
            if name == "SQLite":
                raw = raw_sqlite(data_dir / "raw.db", lines, plan, scenario, raw_cpu)
            else:
                raw = asyncio.run(raw_postgres(database_url, lines, plan, scenario, raw_cpu))
            records = batches * batch
            cpu = {  # CPU seconds per 10,000 records
                "api": {k: v * 10_000 / records for k, v in api_cpu.used.items()},
                "raw": {k: v * 10_000 / records for k, v in raw_cpu.used.items()},
            }
            validation = validation_cpu(payloads)
            most = ceiling(cpu["api"], validation)
            results.append({
                "database": name, "scenario": scenario, "api": round(api), "raw": round(raw),
                "ratio": api / raw, "lines": lines, "batch": batch, "batches": batches,
                "concurrency": concurrency, "processes": processes, "cpu": cpu,
                "validation_us": validation * 1e6,
                "ceiling": most,
            })
            print(f"{name:<10} {scenario:<7} API {api:>9,.0f} records/s   "
                  f"raw {raw:>9,.0f} records/s   {api / raw:6.1%}   CPU s per 10,000:"
                  f" API {_cpu_text(cpu['api'])}, raw {_cpu_text(cpu['raw'])}"
                  f"   validation {validation * 1e6:.1f} µs/record"
                  f"   ceiling {_ceiling_text(most)}"
                  " records/s", flush=True)
    return results


def run(postgres: str | None, *, lines: int = 100_000, batches: int = 20, batch: int = 10_000,
        concurrency: int = 2, sqlite: bool = True, db_name: str = BENCH_DB,
        scenarios: tuple[str, ...] = ("spread", "hot"),
        py_spy: str | None = None, processes: int = 2) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    if sqlite:
        results += measure("sqlite", lines=lines, batches=batches, batch=batch,
                           concurrency=concurrency, scenarios=scenarios, py_spy=py_spy,
                           processes=processes)
    if postgres:
        results += measure(postgres, lines=lines, batches=batches, batch=batch,
                           concurrency=concurrency, db_name=db_name, scenarios=scenarios,
                           py_spy=py_spy, processes=processes)
    return results


def _cpu_text(cpu: dict[str, float]) -> str:
    """CPU seconds as ``processes + database`` (SQLite: the processes alone)."""
    if cpu["database"] == 0:
        return f"{cpu['processes']:.2f}"
    return f"{cpu['processes']:.2f} + {cpu['database']:.2f}"


_HEADER = (
    "| database | records hit | API records/s | raw records/s | API / raw | API CPU s"
    " | raw CPU s | validation µs | ceiling records/s |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|"
)


def _ceiling_text(most: int | None) -> str:
    return "—" if most is None else f"{most:,}"


def markdown(results: list[dict[str, Any]]) -> str:
    first = results[0]
    processes = max((r.get("processes", 2) for r in results if r["database"] == "PostgreSQL"),
                    default=2)
    hit = {"spread": "random over all lines", "hot": "100 lines"}
    rows = "\n".join(
        f"| {r['database']} | {hit[r['scenario']]}"
        f" | {r['api']:,} | {r['raw']:,} | {r['ratio']:.0%}"
        f" | {_cpu_text(r['cpu']['api'])} | {_cpu_text(r['cpu']['raw'])}"
        f" | {r['validation_us']:.1f}"
        f" | {_ceiling_text(r['ceiling'])} |"
        for r in results
    )
    return f"""## Usage charging through a served process

`POST /api/v1/usage` of `openmvno serve --no-worker` over HTTP (PostgreSQL: {processes}
processes, as the README's production deployment runs them behind a load balancer, each
request in flight on its own connection, the connections dealt out over the processes in
turn; SQLite, one writer: one process), with
an API key: {first['batches']} batches of {first['batch']:,} data records each,
{first['concurrency']} requests in flight, over {first['lines']:,} lines (each its own
account and data bucket). Counted is the whole path — HTTP, the key, validation of
every record, rating, the record rows, the ledger (one entry per bucket per batch, the
books kept by the database's trigger) and the answer of every record; every record
came back `charged`. **Raw** is the batched limit of the same database in the same run
and the same distribution, written in `bench/charging.py`: per batch one `INSERT …
SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING` plus one grouped `UPDATE …
FROM unnest(…)` in one transaction over asyncpg (SQLite: `executemany` of the same two
statements), nothing else. Target on PostgreSQL: ≥ 30,000 records/s through the API and
≥ 50 % of raw. **CPU** is what the work cost per 10,000 records, in CPU seconds, read
from `/proc` while it ran: for the API the served processes + the database's backends
(SQLite: the served process alone, the database inside it), for raw the bench's own
process + its backend — where the two cores went. **Validation** is what validating
these records as the route does (pydantic's JSON parser) costs per record, in µs, in the
bench's process. **Ceiling** is the most the API could reach on this machine's
{CORES} cores if its served processes spent nothing but that validation: cores ÷
(the database's CPU per record for the API's own statements + validation's) — no HTTP,
no rating, no statement building, no answers.

{_HEADER}
{rows}

Command: `python bench/charging.py --postgres URL` (or `scripts/bench --only charging`).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("OPENMVNO_BENCH_POSTGRES"))
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2,
                        help="serve processes on PostgreSQL (SQLite: 1)")
    parser.add_argument("--db-name", default=BENCH_DB,
                        help="the PostgreSQL database to (re)create for the run")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--scenario", choices=("spread", "hot"), action="append",
                        help="run only this scenario (may be repeated)")
    parser.add_argument("--py-spy", metavar="PREFIX",
                        help="record the served process with py-spy during each scenario"
                             " into PREFIX-<database>-<scenario>.txt (raw collapsed stacks)")
    args = parser.parse_args()
    results = run(args.postgres, lines=args.lines, batches=args.batches, batch=args.batch,
                  concurrency=args.concurrency, sqlite=not args.no_sqlite,
                  db_name=args.db_name, scenarios=tuple(args.scenario or ("spread", "hot")),
                  py_spy=args.py_spy, processes=args.processes)
    print(markdown(results))


if __name__ == "__main__":
    main()
