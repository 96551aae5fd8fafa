"""Card orders per second through the whole HTTP stack with the sandbox provider:
create the order (API), start a card payment (API), pay on the sandbox's hosted page
with a test card, deliver the signed webhook, fulfil. In-process (httpx over ASGI),
so no network cost is counted.

    python bench/card_orders.py [--orders 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import httpx

from openmvno.accounts import tokens
from openmvno.accounts.models import Account
from openmvno.adapters.payments.sandbox import deliver_due_webhooks
from openmvno.adapters.payments.sandbox_pages import csrf_token
from openmvno.app import create_app
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.migrate import upgrade
from openmvno.runtime import build_runtime
from orders import scratch_settings, setup


async def measure(settings: Settings, n: int, concurrency: int) -> dict[str, Any]:
    settings = settings.model_copy(
        update={"public_url": "http://bench", "payment_provider": "sandbox"}
    )
    await upgrade(settings.database_url)
    rt = build_runtime(settings)
    app = create_app(runtime=rt)
    transport = httpx.ASGITransport(app=app)
    rt.extras["http_transport"] = transport
    try:
        owners = [await setup(rt, -(-n // concurrency)) for _ in range(concurrency)]
        auth = []
        async with unit_of_work(rt.sessions) as session:
            for account, _ in owners:
                me = await session.get(Account, account.id)
                assert me is not None
                pair = await tokens.issue_pair(session, rt, me)
                auth.append({"Authorization": f"Bearer {pair.access_token}"})
        plan = rt.extras["bench_plan"]
        done = 0

        async def buyer(i: int, client: httpx.AsyncClient) -> None:
            nonlocal done
            headers = auth[i]
            for line_id in owners[i][1]:
                if done >= n:
                    return
                done += 1
                r = await client.post(
                    "/api/v1/orders",
                    json={"kind": "plan", "plan_code": plan, "line_id": str(line_id)},
                    headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                )
                order_id = r.json()["id"]
                r = await client.post(
                    f"/api/v1/orders/{order_id}/payments", json={"method": "card"},
                    headers=headers,
                )
                page = r.json()["next_action"]["url"].removeprefix("http://bench")
                await client.post(f"{page}/card", data={
                    "card_number": "4242 4242 4242 4242", "card_expiry": "12/30",
                    "card_cvc": "123", "csrf": csrf_token(rt, page.rsplit("/", 1)[1]),
                })
                await deliver_due_webhooks(rt)

        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            started = time.perf_counter()
            await asyncio.gather(*[buyer(i, client) for i in range(concurrency)])
            took = time.perf_counter() - started
            await deliver_due_webhooks(rt)
            r = await client.get("/api/v1/orders?limit=1", headers=auth[0])
            assert r.json()["items"][0]["state"] == "fulfilled", r.text
        return {
            "database": rt.engine.dialect.name,
            "orders": n,
            "concurrency": concurrency,
            "orders_per_s": round(n / took, 1),
        }
    finally:
        await rt.close()


async def main(n: int, concurrency: int) -> None:
    r = await measure(scratch_settings(), n, concurrency)
    print(f"database: {r['database']}  card orders: {n}  concurrency: {concurrency}")
    print(f"card orders through HTTP + sandbox + webhook: {r['orders_per_s']:8.1f} orders/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency))
