"""notify_many throughput: N renewal notices for N subscribers (half Chinese, half
English, SMS + email each) queued in batches, as the renewal storm does, on SQLite and
(optionally) PostgreSQL; beside it the raw rate of inserting the same outbox rows with no
rendering (one multi-row INSERT per batch, same driver stack) in the same run.

    python bench/notices.py [--postgres URL] [--n 20000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from openmvno.accounts.models import Account
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.migrate import upgrade
from openmvno.notifications import notices
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.runtime import build_runtime

PLAN = {"zh-CN": "畅享30天", "en": "Enjoy 30 days"}
UNTIL = datetime(2027, 1, 1, 4, 0, tzinfo=UTC)


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default="")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="openmvno-bench-notices-"))
    targets = [Settings(data_dir=tmp, database_url=f"sqlite+aiosqlite:///{tmp / 'b.db'}")]
    if args.postgres:
        targets.append(Settings(database_url=args.postgres))
    print("| database | notices | batch | notices/s (SMS + email each) | raw outbox pairs/s "
          "| notices / raw |")
    print("|---|---:|---:|---:|---:|---:|")
    for settings in targets:
        r = asyncio.run(measure(settings, args.n, args.batch))
        print(f"| {r['database']} | {r['n']} | {r['batch']} | {r['notices_per_s']} | "
              f"{r['raw_per_s']} | {r['notices_per_s'] / r['raw_per_s']:.0%} |")


if __name__ == "__main__":
    main()
