"""Outbox delivery throughput: one worker process delivers N queued emails (the outbox-only
email adapter, so nothing leaves the machine) and N provisioning jobs (the sandbox
network), claimed in batches and each marked sent in its own transaction, as
``openmvno worker`` does after a renewal storm; beside it the raw rate of the same number
of one-row UPDATEs by id, each its own transaction, through the same driver stack, in
the same run.

    python bench/outbox.py [--postgres URL] [--n 3000] [--db-name NAME]

PostgreSQL runs in a fresh database ``openmvno_bench_outbox`` (``--db-name``) on the
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

from sqlalchemy import bindparam, insert, select, update

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import each_target, measured_line

from openmvno.accounts.models import Account
from openmvno.catalog.models import Plan, PlanKind
from openmvno.config import Settings
from openmvno.db import execute_alone, unit_of_work
from openmvno.migrate import upgrade
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.orders.models import Order, OrderKind, OrderState
from openmvno.runtime import build_runtime
from openmvno.worker import runner

BENCH_DB = "openmvno_bench_outbox"
NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)


def _message(kind: OutboxKind, key: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "kind": kind, "dedupe_key": key, "account_id": None,
            "recipient": "u@example.com", "subject": "Renewed", "body": "Your plan renewed.",
            "payload": payload, "state": OutboxState.pending, "attempts": 0,
            "next_attempt_at": NOW, "claimed_until": None, "last_error": "",
            "created_at": NOW, "sent_at": None}


async def _queue(settings: Settings, n: int, tag: str) -> None:
    """N emails and N provisioning jobs (each for a paid order of its own)."""
    rt = build_runtime(settings)
    try:
        account_id, plan_id = uuid.uuid4(), uuid.uuid4()
        orders = [{"id": uuid.uuid4(), "number": f"B{tag}{i:07d}", "account_id": account_id,
                   "kind": OrderKind.plan, "plan_id": plan_id, "amount_minor": 3000,
                   "currency": "CNY", "state": OrderState.fulfilled, "result": {},
                   "idempotency_scope": "bench", "idempotency_key": f"{tag}:{i}",
                   "request_hash": "0" * 64,
                   "created_at": NOW, "updated_at": NOW} for i in range(n)]
        async with unit_of_work(rt.sessions) as s:
            phone = f"+86135{uuid.uuid4().int % 10**8:08d}"
            s.add(Account(id=account_id, name="Bench", phone=phone,
                          password_hash="x"))  # noqa: S106 - nobody logs in
            s.add(Plan(id=plan_id, code=f"B{tag}", kind=PlanKind.data, name_zh="月包",
                       name_en="Monthly", price_minor=3000, currency="CNY", validity_days=30))
            await s.flush()
            for start in range(0, n, 2000):
                await s.execute(insert(Order), orders[start:start + 2000])
            rows = [_message(OutboxKind.email, f"bench-email:{tag}:{i}", {}) for i in range(n)]
            rows += [_message(OutboxKind.provision, f"bench-prov:{tag}:{o['id']}",
                              {"order_id": str(o["id"])}) for o in orders]
            for start in range(0, len(rows), 2000):
                await s.execute(insert(OutboxMessage), rows[start:start + 2000])
    finally:
        await rt.close()


async def measure(settings: Settings, n: int) -> dict[str, Any]:
    await upgrade(settings.database_url)
    tag = uuid.uuid4().hex[:6]
    await _queue(settings, n, tag)
    rt = build_runtime(settings)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        delivered = 0
        while batch := await runner.deliver_batch(rt):
            delivered += batch
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        async with rt.sessions() as s:
            sent = list(await s.scalars(select(OutboxMessage.id).where(
                OutboxMessage.dedupe_key.like(f"bench-%:{tag}:%"),
                OutboxMessage.state == OutboxState.sent)))
        if len(sent) != 2 * n:
            raise RuntimeError(f"{len(sent)} of {2 * n} messages sent")

        table = OutboxMessage.__table__
        one = update(table).where(table.c.id == bindparam("m_id")).values(attempts=2)
        raw_wall, raw_cpu = time.perf_counter(), time.process_time()
        for message_id in sent:
            await execute_alone(rt.sessions, one, {"m_id": message_id})
        raw_wall, raw_cpu = time.perf_counter() - raw_wall, time.process_time() - raw_cpu
    finally:
        await rt.close()
    return {"n": n, "messages": delivered, "per_s": round(delivered / wall),
            "cpu_ms": round(1000 * cpu / delivered, 2),
            "raw_per_s": round(len(sent) / raw_wall),
            "raw_cpu_ms": round(1000 * raw_cpu / len(sent), 2)}


def run(postgres: str | None, *, n: int = 3000, db_name: str = BENCH_DB) -> list[dict[str, Any]]:
    """SQLite, then PostgreSQL (database ``db_name``, fresh) when a server is given."""
    return each_target(
        postgres, db_name, "openmvno-bench-outbox-", lambda s: measure(s, n),
        lambda r: f"{r['database']:<10} {r['per_s']:>7} messages/s ({r['cpu_ms']} ms CPU each)"
                  f"   raw {r['raw_per_s']:>7} UPDATEs/s")


HEADER = (
    "| database | messages | messages/s | CPU ms / message | raw UPDATEs/s |"
    " raw CPU ms / UPDATE | messages / raw |\n|---|---:|---:|---:|---:|---:|---:|"
)


def markdown(results: list[dict[str, Any]]) -> str:
    """The docs/BENCHMARKS.md section."""
    first = results[0]
    rows = "\n".join(
        f"| {r['database']} | {r['messages']:,} | {r['per_s']:,} | {r['cpu_ms']} | "
        f"{r['raw_per_s']:,} | {r['raw_cpu_ms']} | {r['per_s'] / r['raw_per_s']:.0%} |"
        for r in results)
    return f"""## Outbox delivery (one worker)

`bench/outbox.py`: one worker process delivers {first['n']:,} queued emails (the
outbox-only adapter: nothing leaves the machine) and {first['n']:,} provisioning jobs (the
sandbox network; each records its outcome on its order), claimed in batches of
`worker_batch` and each marked sent in its own transaction — what `openmvno worker` does
after a renewal storm. **Raw** is the same run's rate of as many one-row UPDATEs by id,
each its own transaction, through the same driver stack (`db.execute_alone`). CPU is the
worker process's own (`time.process_time`), per message.

```sh
python bench/outbox.py --n {first['n']} [--postgres URL]
```

{HEADER}
{rows}

{measured_line(results)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--postgres", default=os.environ.get("OPENMVNO_BENCH_POSTGRES"))
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--db-name", default=BENCH_DB,
                        help="the PostgreSQL database to (re)create for the run")
    args = parser.parse_args()
    print(markdown(run(args.postgres, n=args.n, db_name=args.db_name)))


if __name__ == "__main__":
    main()
