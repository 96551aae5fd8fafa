"""The real sandbox behind the orders API: pay on the hosted page, the signed webhook
reaches ``/webhooks/sandbox`` of the same app, the order is fulfilled exactly once."""

from __future__ import annotations

import httpx
import pytest

from openmvno.adapters.payments.sandbox import deliver_due_webhooks, pending_webhooks
from openmvno.runtime import Runtime
from tests.adapters.payments.sandbox_helpers import pay_by_card
from tests.orders.helpers import order, pay, subscriber


@pytest.mark.parametrize(
    ("number", "state"),
    [("4242424242424242", "fulfilled"), ("4000000000009995", "pending_payment")],
)
async def test_card_topup_through_the_sandbox(
    client: httpx.AsyncClient, rt: Runtime, number: str, state: str
) -> None:
    rt.extras["http_transport"] = client._transport  # webhooks go into this very app
    headers, _ = await subscriber(client)
    created = await order(client, headers, {"kind": "topup", "amount_minor": 3000})
    assert created.status_code in (200, 201), created.text
    order_id = created.json()["id"]
    started = await pay(client, headers, order_id, "card")
    assert started.status_code in (200, 201), started.text
    url = started.json()["next_action"]["url"]
    assert url.startswith("http://testserver/sandbox/pay/sbx_")

    page = await client.get(url.removeprefix("http://testserver"))
    assert page.status_code == 200 and 'data-test="card-number"' in page.text
    paid = await pay_by_card(client, url, number)
    assert paid.status_code == 303
    assert f"/orders/{order_id}/result?attempt=" in paid.headers["location"]

    assert await deliver_due_webhooks(rt) == 1
    assert await pending_webhooks(rt) == 0  # accepted with a 2xx
    got = (await client.get(f"/api/v1/orders/{order_id}", headers=headers)).json()
    assert got["state"] == state
