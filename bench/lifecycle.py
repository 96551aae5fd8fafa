"""Lifecycle moves in batches: N lines (each its own subscriber, on a plan) lapse at
once; the worker's ``lines.lifecycle`` job moves them ``active → grace`` (line event,
network job, ``grace_started`` notice with SMS + email each) in batches of
``--batch``, then ``grace → suspended`` (the same, ``suspended``). Beside it, in the same
run, the raw rate of the bare state change: one set-based UPDATE of the same number of
lines per batch, with nothing else written (the floor of any batch move).

    python bench/lifecycle.py [--postgres URL] [--n 20000] [--batch 500] [--db-name NAME]

PostgreSQL runs in a fresh database ``openmvno_bench_lifecycle`` (``--db-name``) on the
given server; SQLite in a throw-away file. Prints the docs/BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text, update

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import each_target, measured_line

from openmvno import clock
from openmvno.accounts.models import Account
from openmvno.catalog.models import Plan, PlanKind
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.lines import lifecycle
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.migrate import upgrade
from openmvno.runtime import build_runtime

EXPIRED = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
BENCH_DB = "openmvno_bench_lifecycle"


async def _seed(rt: Any, n: int, tag: str) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    prefix = 1300 + uuid.uuid4().int % 700
    accounts = [uuid.uuid4() for _ in range(n)]
    lines = [uuid.uuid4() for _ in range(n)]
    spare = [uuid.uuid4() for _ in range(n)]
    async with unit_of_work(rt.sessions) as s:
        plan = Plan(code=f"B{tag}", kind=PlanKind.mixed, name_zh="畅享30天",
                    name_en="Enjoy 30 days", price_minor=3000, currency="CNY", validity_days=30)
        s.add(plan)
        await s.flush()
        rows = [{"id": a, "name": f"User {i}", "phone": f"+86{prefix}{i:07d}",
                 "email": f"u{i}.{tag}@example.com", "password_hash": "x",
                 "language": "zh-CN" if i % 2 else "en", "role": "subscriber",
                 "failed_logins": 0, "active": True, "created_at": EXPIRED,
                 "updated_at": EXPIRED} for i, a in enumerate(accounts)]
        base = uuid.uuid4().int % 10**6

        def line(
            i: int, ident: uuid.UUID, offset: int, account: uuid.UUID | None
        ) -> dict[str, Any]:
            number = (base * 10 + offset) * 10**7 + i
            return {"id": ident, "kind": LineKind.sim, "iccid": f"89{number:017d}"[:20],
                    "msisdn": f"+{number:013d}"[:20], "account_id": account,
                    "state": LineState.active, "plan_id": plan.id, "expires_at": EXPIRED,
                    "auto_renew": False, "state_changed_at": EXPIRED,
                    "created_at": EXPIRED, "updated_at": EXPIRED}

        for start in range(0, n, 2000):
            await s.execute(insert(Account), rows[start:start + 2000])
            await s.execute(insert(Line), [line(i, lines[i], 1, accounts[i])
                                           for i in range(start, min(n, start + 2000))])
            await s.execute(insert(Line), [line(i, spare[i], 2, None)
                                           for i in range(start, min(n, start + 2000))])
    return lines, spare


async def measure(settings: Settings, n: int, batch: int) -> dict[str, Any]:
    await upgrade(settings.database_url)
    settings.lifecycle_batch = batch
    rt = build_runtime(settings)
    clock.set_clock(lambda: EXPIRED + timedelta(days=8))  # past the expiry and the grace
    try:
        tag = uuid.uuid4().hex[:8]
        lines, spare = await _seed(rt, n, tag)
        grace, suspend = lifecycle.moves(settings)[:2]
        timings = {}
        for move in (grace, suspend):
            started = time.perf_counter()
            while True:
                async with unit_of_work(rt.sessions) as s:
                    if not await lifecycle.apply_move(s, settings, move):
                        break
            timings[move.name] = n / (time.perf_counter() - started)
        started = time.perf_counter()
        for start in range(0, n, batch):
            async with unit_of_work(rt.sessions) as s:
                await s.execute(update(Line).where(Line.id.in_(spare[start:start + batch]))
                                .values(state=LineState.grace, state_changed_at=clock.now()))
        raw = n / (time.perf_counter() - started)
        async with rt.sessions() as s:
            moved = await s.scalar(select(func.count()).where(
                Line.id.in_(lines[:1000]), Line.state == LineState.suspended))
        async with rt.engine.connect() as conn:
            notices = (await conn.execute(text(
                "SELECT count(*) FROM notices WHERE event IN ('grace_started', 'suspended')"
            ))).scalar()
        if moved != min(n, 1000) or not notices or notices < 2 * n:
            raise RuntimeError(f"moved {moved}, {notices} notices for {n} lines")
    finally:
        clock.set_clock(None)
        await rt.close()
    return {"database": "sqlite" if settings.is_sqlite else "postgresql", "n": n,
            "batch": batch, "grace_per_s": round(timings["grace"]),
            "suspend_per_s": round(timings["suspend"]), "raw_per_s": round(raw)}


def run(postgres: str | None, *, n: int = 20000, batch: int = 500,
        db_name: str = BENCH_DB) -> list[dict[str, Any]]:
    """SQLite, then PostgreSQL (database ``db_name``, fresh) when a server is given."""
    return each_target(
        postgres, db_name, "openmvno-bench-lifecycle-", lambda s: measure(s, n, batch),
        lambda r: f"{r['database']:<10} grace {r['grace_per_s']:>7} lines/s   suspended "
                  f"{r['suspend_per_s']:>7} lines/s   raw {r['raw_per_s']:>7} lines/s")


def markdown(results: list[dict[str, Any]]) -> str:
    """The docs/BENCHMARKS.md section."""
    first = results[0]
    rows = "\n".join(
        f"| {r['database']} | {r['n']} | {r['batch']} | {r['grace_per_s']} | "
        f"{r['suspend_per_s']} | {r['raw_per_s']} | {r['grace_per_s'] / r['raw_per_s']:.0%} |"
        for r in results)
    return f"""## Line lifecycle moves in batches (lines.lifecycle)

`bench/lifecycle.py`: N lines, each its own subscriber (half Chinese, half English) on a
plan, lapse at once; the lifecycle job's moves run in batches of {first['batch']:,}, one transaction
per batch: `active → grace` (the conditional UPDATE that claims and moves, one INSERT of
line events, one INSERT of network jobs, the `grace_started` notices through
`notify_many` — SMS + email each — and the plan look-up), then `grace → suspended` (the
same with `suspended`). **raw** is the same run's rate of the bare state change: one
set-based UPDATE per batch of the same number of lines with nothing else written, the
floor of any batch move. A batch costs the same statements for 3 lines as for 60
(`tests/lines/test_lifecycle.py`).

```sh
python bench/lifecycle.py --n {first['n']} --batch {first['batch']} [--postgres URL]
```

| database | lines | batch | active → grace lines/s | grace → suspended lines/s \
| raw state UPDATE lines/s | grace / raw |
|---|---:|---:|---:|---:|---:|---:|
{rows}

{measured_line(results)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--postgres", default=os.environ.get("OPENMVNO_BENCH_POSTGRES"))
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--db-name", default=BENCH_DB,
                        help="the PostgreSQL database to (re)create for the run")
    args = parser.parse_args()
    print(markdown(run(args.postgres, n=args.n, batch=args.batch, db_name=args.db_name)))


if __name__ == "__main__":
    main()
