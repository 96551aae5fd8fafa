"""The worked example: register, renew a lapsed line with a sandbox card, the signed
webhook arrives, the line is active with its buckets and expiry, the receipt downloads.
And the janitor against the sandbox card that never answers."""

from __future__ import annotations

from datetime import timedelta

import httpx

from openmvno.adapters.payments.sandbox import deliver_due_webhooks
from openmvno.lines.models import LineState
from openmvno.payments.janitor import settle_stuck
from openmvno.runtime import Runtime
from tests.adapters.payments.sandbox_helpers import pay_by_card
from tests.conftest import FrozenClock
from tests.orders.helpers import GB, give_line, order, pay, seed_plans, subscriber


async def _card(client: httpx.AsyncClient, url: str, number: str) -> httpx.Response:
    return await pay_by_card(client, url, number)


async def test_register_renew_with_sandbox_card_and_download_the_receipt(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    rt.extras["http_transport"] = client._transport  # sandbox webhooks come back into this app
    await seed_plans(rt)
    headers, me = await subscriber(client, name="Li Lei")
    line = await give_line(rt, me, state=LineState.suspended,
                           expires_at=frozen.now - timedelta(days=40))
    o = (await order(client, headers, {"kind": "plan", "plan_code": "M30",
                                       "line_id": str(line.id)})).json()
    started = await pay(client, headers, o["id"], "card")
    assert started.status_code == 201, started.text
    url = started.json()["next_action"]["url"]
    paid = await _card(client, url, "4242424242424242")
    assert paid.status_code == 303
    assert await deliver_due_webhooks(rt) == 1

    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["state"] == "fulfilled"
    assert got["result"]["expires_at"] == (frozen.now + timedelta(days=30)).isoformat()
    balance = await client.get(f"/api/v1/lines/{line.id}", headers=headers)
    assert balance.json()["state"] == "active"
    granted = {g["kind"]: g["amount"] for g in got["result"]["granted"]}
    assert granted == {"data": 10 * GB, "voice": 6000, "sms": 100}
    pdf = await client.get(got["result"]["receipt_pdf_url"], headers=headers)
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF")
    assert (await deliver_due_webhooks(rt)) == 0  # nothing left, nothing applied twice


async def test_janitor_expires_the_sandbox_card_that_never_answers(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    rt.extras["http_transport"] = client._transport
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    o = (await order(client, headers, {"kind": "plan", "plan_code": "D7",
                                       "line_id": str(line.id)})).json()
    url = (await pay(client, headers, o["id"], "card")).json()["next_action"]["url"]
    await _card(client, url, "4000000000000259")
    await deliver_due_webhooks(rt)
    frozen.advance(hours=1)
    assert await settle_stuck(rt, older_than=timedelta(minutes=30)) == 0  # still processing
    frozen.advance(hours=24)
    assert await settle_stuck(rt, older_than=timedelta(minutes=30)) == 1
    headers2 = await _login_again(client, headers)
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers2)).json()
    assert got["state"] == "pending_payment"
    assert got["failure_code"] == "expired"
    assert got["payments"][0]["state"] == "failed"


async def _login_again(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    r = await client.post("/api/v1/auth/token",
                          json={"login": headers["X-Phone"], "password": "Harbour-Lights-2026"})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}
