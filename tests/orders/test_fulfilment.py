"""Fulfilment edge cases: the line changed hands between ordering and paying."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import func, select, update

from openmvno.db import unit_of_work
from openmvno.ledger.models import Bucket
from openmvno.lines.models import Line
from openmvno.runtime import Runtime
from tests.orders.helpers import (
    fund_wallet,
    give_line,
    order,
    pay,
    reference_of,
    seed_plans,
    send_webhook,
    subscriber,
    use_tiny_provider,
    wallet_minor,
)


async def _set_owner(rt: Runtime, line_id: uuid.UUID, account_id: uuid.UUID | None) -> None:
    """What ``lines.unbind_device`` (None) or another account's ``bind_device`` does."""
    async with unit_of_work(rt.sessions) as s:
        await s.execute(update(Line).where(Line.id == line_id).values(account_id=account_id))


async def _buckets(rt: Runtime, line_id: uuid.UUID) -> int:
    async with unit_of_work(rt.sessions) as s:
        return int(await s.scalar(select(func.count()).select_from(Bucket)
                                  .where(Bucket.line_id == line_id)) or 0)


async def test_card_payment_for_a_line_since_given_to_someone_else_grants_nothing(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """The buyer ordered a renewal, unbound the device, another account bound it; then the
    card payment lands. The new owner gets nothing free; the payment is refunded at the
    provider."""
    provider = use_tiny_provider(rt)
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    o = (await order(client, headers, {"kind": "plan", "plan_code": "M30",
                                       "line_id": str(line.id)})).json()
    ref = reference_of(await pay(client, headers, o["id"], "card"))
    _, other = await subscriber(client)
    await _set_owner(rt, line.id, other)
    r = await send_webhook(client, provider, ref, "succeeded")
    assert r.status_code == 200, r.text
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["state"] == "failed"
    assert got["failure_code"] == "line_unavailable"
    assert got["result"]["refund_due"] is False
    assert got["result"]["refunded_to"] == "provider"
    [refund] = got["result"]["refunds"]
    assert (refund["reason"], refund["amount_minor"]) == ("fulfilment_failed", 5000)
    assert await _buckets(rt, line.id) == 0


async def test_wallet_payment_for_a_line_since_unbound_fails_and_refunds(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    await fund_wallet(rt, me, 5000)
    o = (await order(client, headers, {"kind": "plan", "plan_code": "M30",
                                       "line_id": str(line.id)})).json()
    await _set_owner(rt, line.id, None)
    r = await pay(client, headers, o["id"], "wallet")
    assert r.status_code == 201, r.text
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["state"] == "failed"
    assert got["failure_code"] == "line_unavailable"
    assert got["result"] == {"refund_due": False, "refunded_to": "wallet"}
    assert await wallet_minor(rt, me) == 5000
    assert await _buckets(rt, line.id) == 0
