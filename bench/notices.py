"""notify_many throughput: N renewal notices for N subscribers (half Chinese, half
English, SMS + email each) queued in batches, as the renewal storm does, on SQLite and
(optionally) PostgreSQL; beside it the raw rate of inserting the same outbox rows with no
rendering (one multi-row INSERT per batch, same driver stack) in the same run.

    python bench/notices.py [--postgres URL] [--n 20000] [--batch 1000] [--db-name NAME]

PostgreSQL runs in a fresh database ``openmvno_bench_notices`` (``--db-name``) on the
given server; SQLite in a throw-away file. Prints the docs/BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import each_target, measured_line

from openmvno.accounts.models import Account
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.migrate import upgrade
from openmvno.notifications import notices
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.runtime import build_runtime

PLAN = {"zh-CN": "畅享30天", "en": "Enjoy 30 days"}
UNTIL = datetime(2027, 1, 1, 4, 0, tzinfo=UTC)
BENCH_DB = "openmvno_bench_notices"


async def measure(settings: Settings, n: int, batch: int) -> dict[str, Any]:
    await upgrade(settings.database_url)
    rt = build_runtime(settings)
    try:
        ids = [uuid.uuid4() for _ in range(n)]
        tag = uuid.uuid4().hex[:8]
        prefix = 1300 + uuid.uuid4().int % 700  # unique numbers per run on a reused database
        async with unit_of_work(rt.sessions) as s:
            rows = [{"id": a, "name": f"User {i}", "phone": f"+86{prefix}{i:07d}",
                     "email": f"u{i}.{tag}@example.com", "password_hash": "x",
                     "language": "zh-CN" if i % 2 else "en", "role": "subscriber",
                     "failed_logins": 0, "active": True,
                     "created_at": UNTIL, "updated_at": UNTIL} for i, a in enumerate(ids)]
            for start in range(0, n, 5000):
                await s.execute(insert(Account), rows[start:start + 5000])
        started = time.perf_counter()
        for start in range(0, n, batch):
            items = [notices.NoticeRequest(
                account_id=a, event="renewal_succeeded", key=f"bench:{tag}:{a}", urgent=True,
                params={"plan": PLAN, "expires_at": UNTIL, "amount_minor": 3000,
                        "currency": "CNY"}) for a in ids[start:start + batch]]
            async with unit_of_work(rt.sessions) as s:
                await notices.notify_many(s, items)
        notices_s = n / (time.perf_counter() - started)

        started = time.perf_counter()
        now = datetime.now(UTC)
        for start in range(0, n, batch):
            raw = [{"id": uuid.uuid4(), "kind": kind, "dedupe_key": f"raw:{tag}:{kind}:{a}",
                    "account_id": a, "recipient": "x", "subject": "s", "body": "b",
                    "payload": {}, "state": OutboxState.pending, "attempts": 0,
                    "next_attempt_at": now, "last_error": "", "created_at": now}
                   for a in ids[start:start + batch] for kind in (OutboxKind.sms,
                                                                    OutboxKind.email)]
            async with unit_of_work(rt.sessions) as s:
                await s.execute(insert(OutboxMessage.__table__), raw)
        raw_s = n / (time.perf_counter() - started)
        async with rt.engine.connect() as conn:
            queued = (await conn.execute(text(
                "SELECT count(*) FROM outbox WHERE dedupe_key LIKE 'notice-%'"))).scalar()
        if not queued or queued < 2 * n:
            raise RuntimeError(f"only {queued} outbox rows for {n} notices")
    finally:
        await rt.close()
    return {"database": "sqlite" if settings.is_sqlite else "postgresql", "n": n,
            "batch": batch, "notices_per_s": round(notices_s), "raw_per_s": round(raw_s),
            "outbox_rows": queued}


def run(postgres: str | None, *, n: int = 20000, batch: int = 1000,
        db_name: str = BENCH_DB) -> list[dict[str, Any]]:
    """SQLite, then PostgreSQL (database ``db_name``, fresh) when a server is given."""
    return each_target(
        postgres, db_name, "openmvno-bench-notices-", lambda s: measure(s, n, batch),
        lambda r: f"{r['database']:<10} {r['notices_per_s']:>7} notices/s   "
                  f"raw {r['raw_per_s']:>7} outbox pairs/s")


def markdown(results: list[dict[str, Any]]) -> str:
    """The docs/BENCHMARKS.md section."""
    first = results[0]
    rows = "\n".join(
        f"| {r['database']} | {r['n']} | {r['batch']} | {r['notices_per_s']} | "
        f"{r['raw_per_s']} | {r['notices_per_s'] / r['raw_per_s']:.0%} |" for r in results)
    return f"""## Notices in batches (notify_many)

`bench/notices.py`: N `renewal_succeeded` notices for N subscribers (half Chinese, half
English, SMS + email each: 2 outbox rows per notice) queued through `notify_many` in
batches of {first['batch']:,}, one transaction per batch, as the renewal storm does; **raw** is the
same run's rate of inserting the same outbox row pairs with nothing rendered (SQLAlchemy
multi-row INSERT, same driver stack). Per chunk of 500 requests `notify_many` runs a fixed
number of statements (subscribers + preferences, line numbers, template overrides, one
`INSERT … ON CONFLICT DO NOTHING RETURNING` of the keys, one INSERT of the outbox rows).

```sh
python bench/notices.py --n {first['n']} --batch {first['batch']} [--postgres URL]
```

| database | notices | batch | notices/s (SMS + email each) | raw outbox pairs/s | notices / raw |
|---|---:|---:|---:|---:|---:|
{rows}

{measured_line(results)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--postgres", default=os.environ.get("OPENMVNO_BENCH_POSTGRES"))
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--db-name", default=BENCH_DB,
                        help="the PostgreSQL database to (re)create for the run")
    args = parser.parse_args()
    print(markdown(run(args.postgres, n=args.n, batch=args.batch, db_name=args.db_name)))


if __name__ == "__main__":
    main()
