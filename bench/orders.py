"""Orders per second, end to end through the service layer, on the configured database.

    python bench/orders.py [--orders 500] [--concurrency 8]

Each order is created (with an idempotency key), paid from the wallet and fulfilled
(plan grant, expiry, receipt, provisioning job, notice) in one transaction, as the
API does. For comparison, the same run measures the raw rate of single-row
``UPDATE ... ; COMMIT`` on the same database. Uses OPENMVNO_DATABASE_URL (default:
a throw-away SQLite file). It writes demo rows; point it at a scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

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


async def main(n: int, concurrency: int) -> None:
    settings = Settings()
    if not settings.database_url or "openmvno-data" in settings.database_url:
        tmp = Path(tempfile.mkdtemp(prefix="openmvno-bench-"))
        settings = Settings(data_dir=tmp, database_url=f"sqlite+aiosqlite:///{tmp / 'b.db'}")
    await upgrade(settings.database_url)
    rt = build_runtime(settings)
    try:
        account, lines = await setup(rt, n)
        took = await run_pool(n, concurrency, lambda i: one_order(rt, account, lines[i]))
        async with rt.engine.begin() as conn:
            await conn.execute(
                text("CREATE TABLE IF NOT EXISTS bench_counter (id INT PRIMARY KEY, n BIGINT)")
            )
            await conn.execute(text("DELETE FROM bench_counter"))
            await conn.execute(text("INSERT INTO bench_counter VALUES (1, 0)"))

        async def bump(_: int) -> None:
            async with rt.engine.begin() as conn:
                await conn.execute(text("UPDATE bench_counter SET n = n + 1 WHERE id = 1"))

        raw = await run_pool(n, concurrency, bump)
        async with rt.engine.begin() as conn:
            await conn.execute(text("DROP TABLE bench_counter"))
        db = rt.engine.dialect.name
        print(f"database: {db}  orders: {n}  concurrency: {concurrency}")
        print(f"orders (create + wallet pay + fulfil): {n / took:8.1f} orders/s")
        print(f"raw single-row UPDATE + COMMIT:        {n / raw:8.1f} commits/s")
    finally:
        await rt.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency))
