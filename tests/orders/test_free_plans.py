"""A zero-price plan needs no payment: ordering it fulfils it at once (grants, expiry,
receipt, notice), no provider is asked, and nothing can be "paid" or refunded."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import func, select

from openmvno.catalog.models import Plan, PlanKind
from openmvno.db import unit_of_work
from openmvno.ledger.models import Bucket
from openmvno.payments.models import PaymentRefund
from openmvno.receipts.models import Receipt
from openmvno.runtime import Runtime
from tests.orders.helpers import GB, give_line, order, pay, staff, subscriber, use_tiny_provider


async def _free_plan(rt: Runtime) -> None:
    async with unit_of_work(rt.sessions) as s:
        s.add(Plan(code="TRIAL7", kind=PlanKind.data, name_zh="免费试用", name_en="Free trial",
                   price_minor=0, currency="CNY", validity_days=7, data_bytes=GB))


async def _count(rt: Runtime, model: type, *where: Any) -> int:
    async with unit_of_work(rt.sessions) as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_a_free_plan_is_fulfilled_when_ordered_without_any_payment(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    await _free_plan(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    r = await order(client, headers, {"kind": "plan", "plan_code": "TRIAL7",
                                      "line_id": str(line.id)})
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["state"] == "fulfilled"
    assert got["amount_minor"] == 0
    assert got["result"]["expires_at"] is not None
    [attempt] = got["payments"]
    assert (attempt["method"], attempt["provider"], attempt["amount_minor"]) == ("free", "free", 0)
    assert provider.created == 0  # no provider was asked to take ¥0.00
    assert await _count(rt, Bucket, Bucket.line_id == line.id) == 1
    receipt = await client.get(got["result"]["receipt_url"],
                               headers={**headers, "Accept-Language": "zh-CN"})
    assert receipt.status_code == 200, receipt.text
    assert await _count(rt, Receipt) == 1


async def test_paying_a_free_order_is_a_409_not_a_provider_error(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Before: the card payment of a ¥0.00 order was a 503 ``provider_unavailable``."""
    await _free_plan(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    o = (await order(client, headers, {"kind": "plan", "plan_code": "TRIAL7",
                                       "line_id": str(line.id)})).json()
    r = await pay(client, headers, o["id"], "card")
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "order_not_payable"


async def test_a_free_order_refunded_by_staff_sends_nothing_to_a_provider(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _free_plan(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    o = (await order(client, headers, {"kind": "plan", "plan_code": "TRIAL7",
                                       "line_id": str(line.id)})).json()
    r = await client.post(f"/api/v1/orders/{o['id']}/refund", json={"reason": "abuse"},
                          headers=await staff(client, rt))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "refunded"
    assert "refund" not in r.json()["result"]
    assert await _count(rt, PaymentRefund) == 0
    async with unit_of_work(rt.sessions) as s:
        left = await s.scalar(select(func.sum(Bucket.remaining)).where(Bucket.line_id == line.id))
        assert left == 0


async def test_a_free_plan_bought_in_the_portal_lands_on_its_completed_result(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    from tests.portal.helpers import portal_login, text_of

    await _free_plan(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    await portal_login(client, headers["X-Phone"], "Harbour-Lights-2026")
    confirm = await client.get(f"/buy?plan=TRIAL7&line={line.id}&lang=en")
    assert confirm.status_code == 200, confirm.text
    chunk = confirm.text.split('action="/buy"', 1)[1].split("</form>", 1)[0]
    hidden = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', chunk))
    r = await client.post("/buy", data={**hidden, "method": "card"})
    assert r.status_code == 303, r.text
    assert "/result" in r.headers["location"] and "sandbox" not in r.headers["location"]
    page = await client.get(r.headers["location"].removeprefix("http://testserver"),
                            params={"lang": "en"})
    assert "Completed" in text_of(page.text)
    assert "Free trial" in text_of(page.text)
