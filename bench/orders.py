"""Orders per second, end to end through the service layer, on the configured database.

    python bench/orders.py [--orders 300] [--concurrency 8] [--accounts 8]

Each order is created (with an idempotency key), paid from the wallet and fulfilled
(plan grant, expiry, receipt, provisioning job, notice) in one transaction, as the
API does. For comparison, the same run measures the raw rate of single-row
``UPDATE ... ; COMMIT`` on the same database. Uses OPENMVNO_DATABASE_URL (default:
a throw-away SQLite file). It writes demo rows; point it at a scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from openmvno.accounts.models import Account
from openmvno.catalog.models import Plan, PlanKind
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import EntryReason
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.migrate import upgrade
from openmvno.orders import service as orders
from openmvno.payments import service as payments
from openmvno.runtime import Runtime, build_runtime


async def setup(rt: Runtime, n: int) -> tuple[Account, list[uuid.UUID]]:
    """One subscriber with ``n`` active lines and a wallet that pays for all of them."""
    tag = uuid.uuid4().hex[:8]
    async with unit_of_work(rt.sessions) as s:
        account = Account(name="Bench", phone=f"+8613{uuid.uuid4().int % 10**9:09d}",
                          password_hash="!", language="en")  # noqa: S106 - cannot log in
        plan = Plan(code=f"B{tag}", kind=PlanKind.data, name_zh="基准", name_en="Bench",
                    price_minor=100, currency="CNY", validity_days=30, data_bytes=1024**3)
        s.add_all([account, plan])
        await s.flush()
        lines = []
        for i in range(n):
            line = Line(kind=LineKind.sim, iccid=f"89{tag}{i:010d}"[:22],
                        msisdn=f"+8617{uuid.uuid4().int % 10**9:09d}", account_id=account.id,
                        state=LineState.active)
            s.add(line)
            lines.append(line)
        await s.flush()
        await ledger.credit_wallet(s, account_id=account.id, currency="CNY",
                                   amount_minor=100 * n, reason=EntryReason.adjust,
                                   key=f"bench:{tag}")
        rt.extras["bench_plan"] = plan.code
        return account, [line.id for line in lines]


async def one_order(rt: Runtime, account: Account, line_id: uuid.UUID) -> None:
    async with unit_of_work(rt.sessions) as s:
        me = await s.get(Account, account.id)
        order, _ = await orders.create(
            s, rt, account=me, idempotency_key=uuid.uuid4().hex, language="en",
            body={"kind": "plan", "plan_code": rt.extras["bench_plan"], "line_id": str(line_id)},
        )
        await payments.start(s, rt, order=order, method="wallet", payer=me)


async def run_pool(n: int, concurrency: int, job: object) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await job(i)  # type: ignore[operator]

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return time.perf_counter() - start


async def measure(
    settings: Settings, n: int, concurrency: int, accounts: int
) -> dict[str, float | int | str]:
    """Orders/s with ``accounts`` subscribers (1 = every order hits one wallet row), and
    the raw single-row UPDATE + COMMIT rate at the same concurrency, one row per worker."""
    await upgrade(settings.database_url)
    rt = build_runtime(settings)
    try:
        per = -(-n // accounts)
        owners = [await setup(rt, per) for _ in range(accounts)]
        jobs = [(acc, line) for acc, lines in owners for line in lines][:n]
        took = await run_pool(n, concurrency, lambda i: one_order(rt, *jobs[i]))
        async with rt.engine.begin() as conn:
            await conn.execute(
                text("CREATE TABLE IF NOT EXISTS bench_counter (id INT PRIMARY KEY, n BIGINT)")
            )
            await conn.execute(text("DELETE FROM bench_counter"))
            for i in range(concurrency):
                await conn.execute(text(f"INSERT INTO bench_counter VALUES ({i}, 0)"))

        async def bump(i: int) -> None:
            async with rt.engine.begin() as conn:
                await conn.execute(
                    text("UPDATE bench_counter SET n = n + 1 WHERE id = :i"),
                    {"i": i % concurrency},
                )

        raw = await run_pool(n * 3, concurrency, bump)
        async with rt.engine.begin() as conn:
            await conn.execute(text("DROP TABLE bench_counter"))
        return {
            "database": rt.engine.dialect.name,
            "orders": n,
            "concurrency": concurrency,
            "accounts": accounts,
            "orders_per_s": round(n / took, 1),
            "raw_commits_per_s": round(n * 3 / raw, 1),
        }
    finally:
        await rt.close()


def scratch_settings() -> Settings:
    """OPENMVNO_DATABASE_URL if set, else a throw-away SQLite file (development settings,
    as every bench target: ``common.sqlite_settings``)."""
    settings = Settings()
    if "openmvno-data" in settings.database_url:
        settings = common.sqlite_settings()
    return settings


async def main(n: int, concurrency: int, accounts: int) -> None:
    r = await measure(scratch_settings(), n, concurrency, accounts)
    print(
        f"database: {r['database']}  orders: {n}  concurrency: {concurrency}  "
        f"accounts: {accounts}"
    )
    print(f"orders (create + wallet pay + fulfil): {r['orders_per_s']:8.1f} orders/s")
    print(f"raw single-row UPDATE + COMMIT:        {r['raw_commits_per_s']:8.1f} commits/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--accounts", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency, args.accounts))
