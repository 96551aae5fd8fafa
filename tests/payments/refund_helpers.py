"""Shared by the refund tests: a subscriber with a line and a plan order paid through the
real sandbox (its hosted page, its signed webhooks into the same app), and readers for
what ends up in the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import func, select

from openmvno.db import unit_of_work
from openmvno.ledger.models import BalanceEntry, Bucket
from openmvno.notifications.models import OutboxKind, OutboxMessage
from openmvno.payments.models import PaymentRefund
from openmvno.runtime import Runtime
from tests.orders.helpers import give_line, order, pay, seed_plans, subscriber


@dataclass
class Buyer:
    headers: dict[str, str]
    account_id: uuid.UUID
    line_id: uuid.UUID
    phone: str


async def sandbox_buyer(client: httpx.AsyncClient, rt: Runtime, **kw: Any) -> Buyer:
    """A subscriber with an active line; the sandbox's webhooks come back into ``client``'s
    app (as they would reach the deployment's public URL)."""
    rt.extras["http_transport"] = client._transport
    await seed_plans(rt)
    headers, me = await subscriber(client, **kw)
    line = await give_line(rt, me)
    return Buyer(headers=headers, account_id=me, line_id=line.id, phone=headers["X-Phone"])


async def plan_order(client: httpx.AsyncClient, buyer: Buyer, plan: str = "M30") -> str:
    r = await order(client, buyer.headers,
                    {"kind": "plan", "plan_code": plan, "line_id": str(buyer.line_id)})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def start_payment(
    client: httpx.AsyncClient, buyer: Buyer, order_id: str, method: str = "card"
) -> str:
    """Start a payment through the API; returns the sandbox page's URL."""
    r = await pay(client, buyer.headers, order_id, method)
    assert r.status_code == 201, r.text
    return str(r.json()["next_action"]["url"])


async def get_order(
    client: httpx.AsyncClient, buyer: Buyer, order_id: str, language: str = "en"
) -> dict[str, Any]:
    r = await client.get(f"/api/v1/orders/{order_id}",
                         headers={**buyer.headers, "Accept-Language": language})
    assert r.status_code == 200, r.text
    got: dict[str, Any] = r.json()
    return got


async def stored_result(rt: Runtime, order_id: str) -> dict[str, Any]:
    """An order's ``result`` read from the database (tests that move the clock outlive
    their access tokens)."""
    from openmvno.orders.models import Order

    async with unit_of_work(rt.sessions) as s:
        o = await s.get(Order, uuid.UUID(order_id))
        assert o is not None
        return dict(o.result)


async def count(rt: Runtime, model: type, *where: Any) -> int:
    async with unit_of_work(rt.sessions) as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def refunds_of(rt: Runtime, order_id: str) -> list[PaymentRefund]:
    async with unit_of_work(rt.sessions) as s:
        rows = await s.scalars(select(PaymentRefund)
                               .where(PaymentRefund.order_id == uuid.UUID(order_id)))
        return list(rows.all())


async def messages_to(rt: Runtime, recipient: str) -> list[OutboxMessage]:
    """SMS and email queued for ``recipient``, oldest first."""
    async with unit_of_work(rt.sessions) as s:
        rows = await s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.recipient == recipient,
                   OutboxMessage.kind.in_([OutboxKind.sms, OutboxKind.email]))
            .order_by(OutboxMessage.created_at)
        )
        return list(rows.all())


async def ledger_rows(rt: Runtime, account_id: uuid.UUID) -> tuple[int, int]:
    """(journal entries, buckets) of an account."""
    return (await count(rt, BalanceEntry, BalanceEntry.account_id == account_id),
            await count(rt, Bucket, Bucket.account_id == account_id))
