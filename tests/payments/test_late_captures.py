"""Money that arrives for an order that can no longer take it (cancelled, or already paid
by another payment) goes back to the payer at the provider by itself: shown on the
order, told to the subscriber, never touching the ledger. Cancelling an order stops its
open provider payments. All through the real sandbox: hosted page, signed webhooks,
worker."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from openmvno.adapters.payments import ProviderPayment
from openmvno.adapters.payments.sandbox_models import SandboxRefund
from openmvno.adapters.payments.sandbox_pages import csrf_token
from openmvno.db import unit_of_work
from openmvno.orders import service as orders
from openmvno.orders.models import Order
from openmvno.payments.models import PaymentRefund
from openmvno.runtime import Runtime
from tests.adapters.payments.sandbox_helpers import pay_by_card, submit
from tests.orders.helpers import (
    TinyProvider,
    give_line,
    order,
    pay,
    seed_plans,
    staff,
    subscriber,
)
from tests.payments.refund_helpers import (
    count,
    get_order,
    ledger_rows,
    messages_to,
    plan_order,
    refunds_of,
    sandbox_buyer,
    start_payment,
)
from tests.portal.helpers import portal_login, text_of


async def test_paid_on_the_sandbox_page_after_cancelling_is_refunded_automatically(
    client: httpx.AsyncClient, rt: Runtime, deliver: Any
) -> None:
    """The payer keeps the card page open, cancels the order in another tab, then pays:
    the sandbox captures, and OpenMVNO gives it back without anyone asking."""
    buyer = await sandbox_buyer(client, rt, email="li.lei@example.com")
    order_id = await plan_order(client, buyer)
    url = await start_payment(client, buyer, order_id)
    cancelled = await client.post(f"/api/v1/orders/{order_id}/cancel", headers=buyer.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert (await pay_by_card(client, url)).status_code == 303  # before the worker ran
    await deliver()

    got = await get_order(client, buyer, order_id)
    assert got["state"] == "cancelled"
    [attempt] = got["payments"]
    assert attempt["state"] == "succeeded"  # the sandbox did capture the money
    assert attempt["failure_code"] == "refunded_order_cancelled"
    assert attempt["failure_reason"] == "Refunded automatically: the order was cancelled."
    zh = await get_order(client, buyer, order_id, "zh-CN")
    assert zh["payments"][0]["failure_reason"] == "已自动退款：订单已取消。"
    [entry] = got["result"]["refunds"]
    assert entry == {**entry, "attempt_id": attempt["id"], "amount_minor": 5000,
                     "currency": "CNY", "reason": "order_cancelled", "state": "succeeded"}

    [refund] = await refunds_of(rt, order_id)
    assert (refund.state, refund.attempts, refund.provider) == ("succeeded", 1, "sandbox")
    assert refund.provider_refund_id is not None
    assert await count(rt, SandboxRefund, SandboxRefund.amount_minor == 5000) == 1
    assert await ledger_rows(rt, buyer.account_id) == (0, 0)  # nothing granted, nothing owed

    [sms] = [m for m in await messages_to(rt, buyer.phone) if m.dedupe_key.startswith("refund")]
    assert "was cancelled, but a payment of CN¥50.00 still arrived" in sms.body
    assert "refunded to you automatically" in sms.body
    [email] = await messages_to(rt, "li.lei@example.com")
    assert email.subject == f"Your payment for order {got['number']} is being refunded"

    await portal_login(client, buyer.phone, "Harbour-Lights-2026")
    for lang, note in (("en", "CN¥50.00 refunded automatically: the order was cancelled."),
                       ("zh-CN", "已自动退款 ¥50.00：订单已取消。")):
        page = await client.get(f"/orders/{order_id}?lang={lang}")
        assert page.status_code == 200, page.text
        assert note in text_of(page.text)


async def test_cancelling_an_order_stops_its_payment_on_the_sandbox(
    client: httpx.AsyncClient, rt: Runtime, deliver: Any
) -> None:
    buyer = await sandbox_buyer(client, rt)
    order_id = await plan_order(client, buyer)
    url = await start_payment(client, buyer, order_id)
    r = await client.post(f"/api/v1/orders/{order_id}/cancel", headers=buyer.headers)
    assert r.status_code == 200, r.text
    await deliver()  # the worker tells the sandbox

    page = await client.get(url.removeprefix("http://testserver") + "?lang=en")
    assert "This payment was cancelled by the merchant; nothing was charged." in page.text
    assert 'data-test="card-number"' not in page.text
    reference = url.rsplit("/", 1)[1]
    late = await client.post(
        url.removeprefix("http://testserver") + "/card",
        data={"card_number": "4242424242424242", "card_expiry": "12/39", "card_cvc": "123",
              "csrf": csrf_token(rt, reference)},
    )
    assert late.status_code == 409
    await deliver()
    got = await get_order(client, buyer, order_id)
    assert got["state"] == "cancelled"
    assert got["payments"][0]["state"] == "failed"
    assert got["payments"][0]["failure_code"] == "cancelled"
    assert await refunds_of(rt, order_id) == []
    assert await count(rt, SandboxRefund) == 0


async def test_a_second_capture_for_a_paid_order_is_refunded_and_fulfils_once(
    client: httpx.AsyncClient, rt: Runtime, deliver: Any
) -> None:
    """Two tabs, two methods, both paid: the first fulfils the order, the second goes back."""
    buyer = await sandbox_buyer(client, rt)
    order_id = await plan_order(client, buyer)
    card = await start_payment(client, buyer, order_id, "card")
    alipay = await start_payment(client, buyer, order_id, "alipay")
    assert (await pay_by_card(client, card)).status_code == 303
    assert (await submit(client, alipay, "confirm")).status_code == 303
    await deliver()

    got = await get_order(client, buyer, order_id)
    assert got["state"] == "fulfilled"
    by_method = {p["method"]: p for p in got["payments"]}
    assert by_method["card"]["failure_code"] is None
    assert by_method["alipay"]["failure_code"] == "refunded_already_paid"
    assert by_method["alipay"]["failure_reason"] == (
        "Refunded automatically: the order was already paid.")
    [entry] = got["result"]["refunds"]
    assert (entry["attempt_id"], entry["reason"], entry["state"]) == (
        by_method["alipay"]["id"], "already_paid", "succeeded")
    assert await count(rt, SandboxRefund) == 1
    _, buckets = await ledger_rows(rt, buyer.account_id)
    assert buckets == 3  # the plan's data, voice and SMS, granted once
    assert any("your extra payment of CN¥50.00 is being refunded" in m.body
               for m in await messages_to(rt, buyer.phone))


async def test_a_capture_reported_while_cancelling_at_the_provider_is_refunded(
    client: httpx.AsyncClient, rt: Runtime, deliver: Any
) -> None:
    """The worker asks the sandbox to cancel; the sandbox answers that the payer already
    paid. That answer alone (before any webhook) refunds the payment."""
    buyer = await sandbox_buyer(client, rt)
    order_id = await plan_order(client, buyer)
    url = await start_payment(client, buyer, order_id)
    await client.post(f"/api/v1/orders/{order_id}/cancel", headers=buyer.headers)
    assert (await pay_by_card(client, url)).status_code == 303
    rt.extras["http_transport"] = httpx.MockTransport(lambda _: httpx.Response(503))
    await deliver()  # the webhook never gets through; the cancel job learns of the capture
    got = await get_order(client, buyer, order_id)
    assert got["payments"][0]["failure_code"] == "refunded_order_cancelled"
    [refund] = await refunds_of(rt, order_id)
    assert refund.state == "succeeded"


async def test_staff_refund_of_a_sandbox_card_payment_is_sent_to_the_sandbox(
    client: httpx.AsyncClient, rt: Runtime, deliver: Any
) -> None:
    buyer = await sandbox_buyer(client, rt)
    order_id = await plan_order(client, buyer)
    assert (await pay_by_card(client, await start_payment(client, buyer, order_id))
            ).status_code == 303
    await deliver()
    assert (await get_order(client, buyer, order_id))["state"] == "fulfilled"
    agent = await staff(client, rt)
    r = await client.post(f"/api/v1/orders/{order_id}/refund",
                          json={"reason": "customer changed mind"}, headers=agent)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "refunded"
    assert r.json()["result"]["refund"]["status"] == "requested"
    assert await count(rt, SandboxRefund) == 0  # not inside the request: the worker sends it
    await deliver()

    got = await get_order(client, buyer, order_id)
    assert got["result"]["refund"]["status"] == "succeeded"
    assert got["result"]["refunds"][0]["reason"] == "staff"
    [refund] = await refunds_of(rt, order_id)
    assert (refund.state, refund.amount_minor, refund.attempts) == ("succeeded", 5000, 1)
    assert await count(rt, SandboxRefund, SandboxRefund.amount_minor == 5000) == 1
    again = await client.post(f"/api/v1/orders/{order_id}/refund", json={"reason": "twice"},
                              headers=agent)
    assert again.status_code == 409
    await deliver()
    assert await count(rt, PaymentRefund) == 1
    assert await count(rt, SandboxRefund) == 1


async def test_an_order_cancelled_while_its_payment_is_being_created_is_stopped_too(
    client: httpx.AsyncClient, rt: Runtime, deliver: Any
) -> None:
    """The cancel lands while the provider is still creating the payment (no reference
    recorded yet): when the provider's answer is recorded, its cancel is queued."""
    cancel_now: list[uuid.UUID] = []

    class CancelledMeanwhile(TinyProvider):
        async def create(self, **kw: Any) -> ProviderPayment:
            payment = await super().create(**kw)
            async with unit_of_work(rt.sessions) as s:  # the payer's other tab
                o = await s.get(Order, cancel_now[0])
                assert o is not None
                await orders.cancel(s, o)
            return payment

    provider = CancelledMeanwhile()
    rt.extras["payment_provider"] = provider
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    o = (await order(client, headers, {"kind": "plan", "plan_code": "M30",
                                       "line_id": str(line.id)})).json()
    cancel_now.append(uuid.UUID(o["id"]))
    r = await pay(client, headers, o["id"], "card")
    assert r.status_code == 201, r.text
    assert r.json()["order_state"] == "cancelled"
    [reference] = provider.payments
    assert provider.payments[reference].status == "requires_action"
    await deliver()
    assert provider.payments[reference].status == "failed"
    assert provider.payments[reference].failure_code == "cancelled"
