"""Staff refunds: the money goes back to whoever paid, and is taken back from whoever
was credited, whatever happened to the line or other payments since."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import update

from openmvno.db import unit_of_work
from openmvno.lines.models import Line, LineState
from openmvno.runtime import Runtime
from tests.orders.guests import guest_order, guest_pay
from tests.orders.helpers import (
    fund_wallet,
    give_line,
    order,
    pay,
    reference_of,
    seed_esims,
    seed_plans,
    send_webhook,
    staff,
    subscriber,
    use_tiny_provider,
    wallet_minor,
)


async def _set_owner(rt: Runtime, line_id: uuid.UUID, account_id: uuid.UUID | None) -> None:
    """What ``lines.unbind_device`` (None) or another account's ``bind_device`` does."""
    async with unit_of_work(rt.sessions) as s:
        await s.execute(update(Line).where(Line.id == line_id).values(account_id=account_id))


async def test_refund_pays_back_the_attempt_that_paid_not_a_late_duplicate(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """A card payment left open, then the wallet pays; the card succeeds late (refunded at
    the provider on its own). Refunding the order gives the wallet money back, and the
    card is never refunded a second time."""
    provider = use_tiny_provider(rt)
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    await fund_wallet(rt, me, 5000)
    o = (await order(client, headers, {"kind": "plan", "plan_code": "M30",
                                       "line_id": str(line.id)})).json()
    card = reference_of(await pay(client, headers, o["id"], "card"))
    assert (await pay(client, headers, o["id"], "wallet")).status_code == 201
    late = await send_webhook(client, provider, card, "succeeded")
    assert late.json()["outcome"].startswith("refunding")
    assert await wallet_minor(rt, me) == 0
    agent = await staff(client, rt)
    r = await client.post(f"/api/v1/orders/{o['id']}/refund", json={"reason": "changed mind"},
                          headers=agent)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["refund"] == {"to": "wallet", "amount_minor": 5000}
    assert await wallet_minor(rt, me) == 5000
    card_attempt = next(p for p in r.json()["payments"] if p["method"] == "card")
    [card_refund] = r.json()["result"]["refunds"]
    assert (card_refund["attempt_id"], card_refund["reason"]) == (card_attempt["id"],
                                                                  "already_paid")


async def test_guest_topup_refund_takes_back_from_the_account_credited(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """The number changed hands after the top-up: the refund takes the money back from the
    account that received it, never from the number's new owner."""
    provider = use_tiny_provider(rt)
    _, first_owner = await subscriber(client)
    line = await give_line(rt, first_owner)
    created, token = await guest_order(client, line.msisdn, 3000)
    oid = created["id"]
    await send_webhook(client, provider, reference_of(await guest_pay(client, token, "alipay")),
                       "succeeded")
    assert await wallet_minor(rt, first_owner) == 3000
    _, new_owner = await subscriber(client)
    await fund_wallet(rt, new_owner, 3000)
    await _set_owner(rt, line.id, new_owner)
    agent = await staff(client, rt)
    r = await client.post(f"/api/v1/orders/{oid}/refund", json={"reason": "wrong number"},
                          headers=agent)
    assert r.status_code == 200, r.text
    assert await wallet_minor(rt, first_owner) == 0
    assert await wallet_minor(rt, new_owner) == 3000


async def test_guest_topup_refund_after_the_line_was_unbound(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    _, owner = await subscriber(client)
    line = await give_line(rt, owner)
    created, token = await guest_order(client, line.msisdn, 3000)
    oid = created["id"]
    await send_webhook(client, provider, reference_of(await guest_pay(client, token, "alipay")),
                       "succeeded")
    await _set_owner(rt, line.id, None)
    agent = await staff(client, rt)
    r = await client.post(f"/api/v1/orders/{oid}/refund", json={"reason": "wrong number"},
                          headers=agent)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "refunded"
    assert await wallet_minor(rt, owner) == 0


async def test_refund_of_an_order_already_refunded_to_the_wallet_pays_nothing_more(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Paid from the wallet, no stock left: refunded to the wallet at once. A staff refund
    afterwards closes the order but never credits the wallet a second time."""
    await seed_plans(rt)
    headers, me = await subscriber(client)
    await fund_wallet(rt, me, 10000)
    await seed_esims(rt, 1)
    o = (await order(client, headers, {"kind": "new_line", "plan_code": "D7"})).json()
    async with unit_of_work(rt.sessions) as s:  # the last eSIM is scrapped meanwhile
        await s.execute(update(Line).values(state=LineState.terminated))
    r = await pay(client, headers, o["id"], "wallet")
    assert r.status_code == 201, r.text
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert (got["state"], got["failure_code"]) == ("failed", "out_of_stock")
    assert await wallet_minor(rt, me) == 10000
    agent = await staff(client, rt)
    refunded = await client.post(f"/api/v1/orders/{o['id']}/refund", json={"reason": "close"},
                                 headers=agent)
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["state"] == "refunded"
    assert await wallet_minor(rt, me) == 10000
