"""The ledger's set-based path: ``ledger.batch.post_batch`` records/s beside the raw limit.

    python bench/ledger.py [--postgres URL] [--buckets 100000] [--batches 10] [--batch 10000]

For each database (a throw-away SQLite file; PostgreSQL when ``--postgres`` is given, in a
fresh database ``openmvno_bench_ledger`` on that server, or ``--db-name``) this creates
``--buckets`` data buckets (one account; filled through the ledger, set-based) and then
posts ``--batches`` batches of ``--batch`` debits through ``post_batch`` (one transaction
per batch, through the same SQLAlchemy session a service uses), twice:

* **spread**: every posting names a random one of all the buckets;
* **hot**: every posting names one of the first 100 buckets.

Every posting must come back ``applied``. What is counted: the three statements of a
batch (the buckets locked in id order, the keys already posted, one ``INSERT … SELECT
FROM unnest(…)`` / ``json_each(?)`` of the entries), the database's trigger moving the
balances, Python's fold over the batch, and the commit. **Raw** is the batched limit of
the same database in the same run with the same distribution (``bench/charging.py``:
per batch one ``INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING`` plus
one grouped ``UPDATE … FROM unnest(…)`` over asyncpg; SQLite ``executemany`` of the two).
Note the difference in work: a ledger entry per posting (8 columns, a 40-character key,
UUIDs) against the raw usage row of 4 columns.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

import charging
from common import fresh_postgres_url, load_average, measured_line, now_utc

from openmvno import clock
from openmvno.db import make_engine, make_sessionmaker, unit_of_work
from openmvno.migrate import upgrade

BENCH_DB = "openmvno_bench_ledger"
FULL = 1 << 40
NO_LOGIN = "!"  # no password hash matches it: nobody logs in as the bench account


async def seed(database_url: str, n: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """One account, ``n`` data buckets, each filled by a grant entry (post_batch)."""
    from openmvno.ledger.batch import post_batch
    from openmvno.ledger.models import Bucket, BucketKind, EntryReason
    from openmvno.ledger.service import Posting
    from openmvno.models import Account

    await upgrade(database_url)
    engine = make_engine(database_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    now = clock.now()
    account = uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(n)]
    try:
        async with unit_of_work(sessions) as s:
            await s.execute(insert(Account).values(
                id=account, name="Bench", password_hash=NO_LOGIN, language="en",
                failed_logins=0, active=True, created_at=now, updated_at=now,
            ))
        for start in range(0, n, 10_000):
            chunk = ids[start:start + 10_000]
            async with unit_of_work(sessions) as s:
                await s.execute(insert(Bucket), [
                    {"id": i, "account_id": account, "kind": BucketKind.data,
                     "valid_from": now, "priority": 100, "initial": FULL, "remaining": 0,
                     "reserved": 0, "created_at": now, "updated_at": now}
                    for i in chunk
                ])
                await post_batch(s, [
                    Posting(i, account, FULL, EntryReason.grant, f"fill:{i}") for i in chunk
                ])
        async with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("COMMIT"))
                await conn.execute(text("VACUUM ANALYZE"))
    finally:
        await engine.dispose()
    return account, ids


async def through_ledger(database_url: str, account: uuid.UUID, ids: list[uuid.UUID],
                         plan: list[list[int]], tag: str) -> float:
    from openmvno.ledger.batch import post_batch
    from openmvno.ledger.models import EntryReason
    from openmvno.ledger.service import Posting

    engine = make_engine(database_url, pool_size=1)
    sessions = make_sessionmaker(engine)
    usage = EntryReason.usage
    try:
        batches = [
            [Posting(ids[k], account, -charging.UNITS, usage, f"{tag}:{b}:{i}")
             for i, k in enumerate(draw)]
            for b, draw in enumerate(plan)
        ]
        async with unit_of_work(sessions) as s:  # warm: connection, prepared statements
            await post_batch(s, [Posting(ids[0], account, -1, usage, f"{tag}:warm")])
        started = time.perf_counter()
        records = 0
        for batch in batches:
            async with unit_of_work(sessions) as s:
                out = await post_batch(s, batch)
            bad = [a for a in out if a.status != "applied"]
            assert not bad, bad[:3]
            records += len(out)
        elapsed = time.perf_counter() - started
    finally:
        await engine.dispose()
    return records / elapsed


async def books_ok(database_url: str) -> bool:
    from openmvno.ledger import service

    engine = make_engine(database_url, pool_size=1)
    try:
        async with unit_of_work(make_sessionmaker(engine)) as s:
            return await service.check(s) == []
    finally:
        await engine.dispose()


def measure(database_url: str, *, buckets: int, batches: int, batch: int,
            db_name: str = BENCH_DB) -> list[dict[str, Any]]:
    name = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    data_dir = Path(tempfile.mkdtemp(prefix="openmvno-bench-ledger-"))
    before, at = load_average(), now_utc()
    if name == "SQLite":
        database_url = f"sqlite+aiosqlite:///{data_dir / 'ledger.db'}"
    else:
        database_url = fresh_postgres_url(database_url, db_name)
    account, ids = asyncio.run(seed(database_url, buckets))
    results = []
    for scenario, hot in (("spread", False), ("hot", True)):
        plan = charging.draws(buckets, batches=batches, batch=batch, hot=hot,
                              seed_=5 if hot else 6)
        ledger = asyncio.run(through_ledger(database_url, account, ids, plan, scenario))
        if name == "SQLite":
            raw = charging.raw_sqlite(data_dir / "raw.db", buckets, plan, scenario)
        else:
            raw = asyncio.run(charging.raw_postgres(database_url, buckets, plan, scenario))
        results.append({
            "database": name, "scenario": scenario, "ledger": round(ledger), "raw": round(raw),
            "ratio": ledger / raw, "buckets": buckets, "batch": batch, "batches": batches,
        })
        print(f"{name:<10} {scenario:<7} post_batch {ledger:>9,.0f} records/s   "
              f"raw {raw:>9,.0f} records/s   {ledger / raw:6.1%}", flush=True)
    assert asyncio.run(books_ok(database_url)), "ledger check found drift"
    after = load_average()
    for r in results:
        r.update(load_before=before, load_after=after, measured_at=at)
    return results


def run(postgres: str | None, *, buckets: int = 100_000, batches: int = 10,
        batch: int = 10_000, db_name: str = BENCH_DB) -> list[dict[str, Any]]:
    """SQLite, then PostgreSQL (database ``db_name``, fresh) when a server is given."""
    results = measure("sqlite", buckets=buckets, batches=batches, batch=batch)
    if postgres:
        results += measure(postgres, buckets=buckets, batches=batches, batch=batch,
                           db_name=db_name)
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    first = results[0]
    hit = {"spread": f"random over {first['buckets']:,} buckets", "hot": "100 buckets"}
    rows = "\n".join(
        f"| {r['database']} | {hit[r['scenario']]} | {r['ledger']:,} | {r['raw']:,} |"
        f" {r['ratio']:.0%} |"
        for r in results
    )
    return f"""## Ledger batches (post_batch)

`ledger.batch.post_batch` through the session a service uses: {first['batches']}
batches of {first['batch']:,} debits, one transaction each, every posting its own
ledger entry (unique key), the balances moved by the database's trigger (PostgreSQL:
one statement-level trigger summing the deltas per bucket; SQLite: a row trigger);
three statements per batch whatever its size. **Raw** is the batched limit of the same
database in the same run with the same distribution (`bench/charging.py`: per batch one
`INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING` of a 4-column usage
row plus one grouped `UPDATE … FROM unnest(…)`, over asyncpg; SQLite `executemany` of
the two) — it writes less per record than a ledger entry. `openmvno ledger check` is
clean after the run.

| database | postings hit | post_batch records/s | raw records/s | ledger / raw |
|---|---|---:|---:|---:|
{rows}

Command: `python bench/ledger.py --postgres URL` (or `scripts/bench --only ledger`;
`--buckets 100000 --batches 10 --batch 10000` are the defaults).

{measured_line(results[::2])}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres")
    parser.add_argument("--buckets", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--db-name", default=BENCH_DB,
                        help="the PostgreSQL database to (re)create for the run")
    args = parser.parse_args()
    print(markdown(run(args.postgres, buckets=args.buckets, batches=args.batches,
                       batch=args.batch, db_name=args.db_name)))


if __name__ == "__main__":
    main()
