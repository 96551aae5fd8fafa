"""Staff reading a subscriber's orders and receipts, and every staff cancel or payment,
leave one audit event each (who, what, whose, when); a subscriber acting on their own
orders leaves none."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from openmvno.audit.models import AuditEvent
from openmvno.db import unit_of_work
from openmvno.runtime import Runtime
from tests.orders.guests import guest_order, guest_pay
from tests.orders.helpers import (
    fund_wallet,
    give_line,
    order,
    pay,
    reference_of,
    seed_plans,
    send_webhook,
    staff,
    subscriber,
    use_tiny_provider,
)


async def _events(rt: Runtime) -> list[AuditEvent]:
    async with unit_of_work(rt.sessions) as s:
        return list((await s.scalars(select(AuditEvent).order_by(AuditEvent.at))).all())


async def _id_of(client: httpx.AsyncClient, headers: dict[str, str]) -> uuid.UUID:
    return uuid.UUID((await client.get("/api/v1/me", headers=headers)).json()["id"])


async def _plan_order(
    client: httpx.AsyncClient, rt: Runtime, headers: dict[str, str], account: uuid.UUID
) -> str:
    line = await give_line(rt, account)
    r = await order(client, headers, {"kind": "plan", "plan_code": "M30",
                                      "line_id": str(line.id)})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_an_agent_reading_a_subscribers_order_is_audited_once_the_owner_never(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await seed_plans(rt)
    a_headers, a = await subscriber(client)
    oid = await _plan_order(client, rt, a_headers, a)
    mine = await client.get(f"/api/v1/orders/{oid}", headers=a_headers)
    assert mine.status_code == 200
    assert await _events(rt) == []
    agent = await staff(client, rt)
    seen = await client.get(f"/api/v1/orders/{oid}", headers=agent)
    assert seen.status_code == 200, seen.text
    [event] = await _events(rt)
    assert event.actor_id == await _id_of(client, agent)
    assert (event.action, event.subject_type, event.subject_id) == ("order.view", "order", oid)
    assert event.account_id == a
    assert event.data["number"] == seen.json()["number"]
    assert event.at is not None
    # Another subscriber is refused and leaves nothing behind.
    b_headers, _ = await subscriber(client)
    assert (await client.get(f"/api/v1/orders/{oid}", headers=b_headers)).status_code == 404
    assert len(await _events(rt)) == 1


async def test_staff_reading_a_receipt_as_json_html_or_pdf_is_audited_each_time(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await seed_plans(rt)
    a_headers, a = await subscriber(client)
    await fund_wallet(rt, a, 5000)
    oid = await _plan_order(client, rt, a_headers, a)
    assert (await pay(client, a_headers, oid, "wallet")).status_code == 201
    rid = (await client.get("/api/v1/receipts", headers=a_headers)).json()["items"][0]["id"]
    for suffix in ("", ".html", ".pdf"):
        assert (await client.get(f"/api/v1/receipts/{rid}{suffix}",
                                 headers=a_headers)).status_code == 200
    assert await _events(rt) == []
    agent = await staff(client, rt)
    agent_id = await _id_of(client, agent)
    for suffix in ("", ".html", ".pdf"):
        r = await client.get(f"/api/v1/receipts/{rid}{suffix}", headers=agent)
        assert r.status_code == 200, r.text
    events = await _events(rt)
    assert [(e.action, e.subject_id, e.actor_id, e.account_id) for e in events] == [
        ("receipt.view", rid, agent_id, a)
    ] * 3


async def test_a_staff_cancel_and_a_staff_payment_are_audited(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    use_tiny_provider(rt)
    await seed_plans(rt)
    a_headers, a = await subscriber(client)
    first = await _plan_order(client, rt, a_headers, a)
    second = await _plan_order(client, rt, a_headers, a)
    own = await _plan_order(client, rt, a_headers, a)
    assert (await pay(client, a_headers, own, "card")).status_code == 201
    assert (await client.post(f"/api/v1/orders/{own}/cancel", headers=a_headers)).status_code \
        == 200
    assert await _events(rt) == []
    agent = await staff(client, rt)
    agent_id = await _id_of(client, agent)
    started = await pay(client, agent, first, "card")
    assert started.status_code == 201, started.text
    cancelled = await client.post(f"/api/v1/orders/{second}/cancel", headers=agent)
    assert cancelled.status_code == 200, cancelled.text
    events = await _events(rt)
    assert sorted((e.action, e.subject_id) for e in events) == sorted(
        [("payment.start", first), ("order.cancel", second)]
    )
    assert {(e.actor_id, e.account_id) for e in events} == {(agent_id, a)}


async def test_staff_reading_a_guest_order_is_audited_against_the_account_it_credits(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Staff may open a guest order by its id (nobody else may): audited, and the event
    names the subscriber the top-up is for."""
    provider = use_tiny_provider(rt)
    _, owner = await subscriber(client)
    line = await give_line(rt, owner)
    created, token = await guest_order(client, line.msisdn)
    await send_webhook(client, provider, reference_of(await guest_pay(client, token, "card")),
                       "succeeded")
    assert await _events(rt) == []  # the guest's own reads leave nothing
    agent = await staff(client, rt)
    seen = await client.get(f"/api/v1/orders/{created['id']}", headers=agent)
    assert seen.status_code == 200, seen.text
    assert seen.json()["msisdn"] != line.msisdn  # masked for staff too
    rid = seen.json()["result"]["receipt_id"]
    assert (await client.get(f"/api/v1/receipts/{rid}", headers=agent)).status_code == 200
    events = await _events(rt)
    assert [(e.action, e.account_id) for e in events] == [("order.view", owner),
                                                         ("receipt.view", owner)]
