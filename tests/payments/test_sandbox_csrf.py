"""The sandbox's hosted pay pages take a form only with its CSRF token (tied to the
payment, keyed with the deployment secret): another site that knows a payment link
cannot make the payer's browser pay it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openmvno.adapters.payments.sandbox_models import SandboxPayment
from openmvno.adapters.payments.sandbox_pages import csrf_token
from openmvno.runtime import Runtime
from tests.adapters.payments.sandbox_helpers import submit
from tests.payments.refund_helpers import get_order, plan_order, sandbox_buyer, start_payment

CARD = {"card_number": "4242424242424242", "card_expiry": "12/39", "card_cvc": "123"}


async def _sandbox_row(rt: Runtime, url: str) -> SandboxPayment:
    async with rt.sessions() as s:
        row = await s.scalar(select(SandboxPayment)
                             .where(SandboxPayment.reference == url.rsplit("/", 1)[1]))
        assert row is not None
        return row


@pytest.mark.parametrize(
    ("method", "step", "data"),
    [("card", "card", CARD), ("alipay", "confirm", {}), ("wechat_pay", "decline", {}),
     ("bank_transfer", "transfer", {})],
)
@pytest.mark.parametrize("token", ["", "forged"], ids=["no-token", "wrong-token"])
async def test_a_pay_page_post_without_its_token_is_403_and_pays_nothing(
    client: httpx.AsyncClient, rt: Runtime, deliver: Any, method: str, step: str,
    data: dict[str, str], token: str,
) -> None:
    buyer = await sandbox_buyer(client, rt)
    order_id = await plan_order(client, buyer)
    url = await start_payment(client, buyer, order_id, method)
    path = url.removeprefix("http://testserver")
    sent = dict(data)
    if token == "forged":
        sent["csrf"] = csrf_token(rt, "sbx_another_payment")  # a real token, of another payment
    r = await client.post(f"{path}/{step}?lang=en", data=sent)
    assert r.status_code == 403
    assert "Nothing was paid." in r.text
    row = await _sandbox_row(rt, url)
    assert (row.status, row.webhook_due_at, row.card_last4) == ("requires_action", None, None)
    await deliver()
    assert (await get_order(client, buyer, order_id))["state"] == "pending_payment"

    # The page's own form carries the token and goes through.
    ok = await submit(client, url, step, data)
    assert ok.status_code == 303


async def test_the_3ds_step_needs_the_token_too(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    buyer = await sandbox_buyer(client, rt)
    order_id = await plan_order(client, buyer)
    url = await start_payment(client, buyer, order_id)
    challenged = await submit(client, url, "card", {**CARD, "card_number": "4000002760003184"})
    assert challenged.status_code == 303  # to the bank's challenge
    path = url.removeprefix("http://testserver")
    r = await client.post(f"{path}/3ds", data={"outcome": "approve"})
    assert r.status_code == 403
    assert (await _sandbox_row(rt, url)).status == "requires_action"
    assert (await submit(client, url, "3ds", {"outcome": "approve"})).status_code == 303
    assert (await _sandbox_row(rt, url)).status == "succeeded"
