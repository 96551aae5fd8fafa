"""The provider is called outside any transaction: what happens when it is down, when
its webhook outruns our own record, and when the payer comes back before the webhook."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from openmvno.accounts.models import Account
from openmvno.db import unit_of_work
from openmvno.ledger.models import Bucket
from openmvno.lines.models import LineState
from openmvno.payments import service as payments
from openmvno.payments.models import ExternalEvent, PaymentAttempt
from openmvno.runtime import Runtime
from tests.orders.helpers import (
    TinyProvider,
    give_line,
    order,
    pay,
    reference_of,
    seed_plans,
    send_webhook,
    subscriber,
    use_tiny_provider,
)


class DownProvider(TinyProvider):
    async def create(self, **kwargs: Any) -> Any:
        raise ConnectionError("provider unreachable")


async def _plan_order(client: httpx.AsyncClient, rt: Runtime) -> tuple[dict[str, str], uuid.UUID, Any]:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me, state=LineState.active)
    o = (await order(client, headers, {"kind": "plan", "plan_code": "M30", "line_id": str(line.id)})).json()
    return headers, line.id, o


async def _count(rt: Runtime, model: type, *where: object) -> int:
    async with unit_of_work(rt.sessions) as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_provider_down_is_a_clear_503_and_the_order_stays_payable(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    rt.extras["payment_provider"] = DownProvider()
    headers, _, o = await _plan_order(client, rt)
    r = await pay(client, {**headers, "Accept-Language": "zh-CN"}, str(o["id"]), "card")
    assert r.status_code == 503
    assert r.json()["code"] == "provider_unavailable"
    assert "未产生任何扣款" in r.json()["detail"]
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["state"] == "pending_payment"
    assert got["payments"][0]["state"] == "failed"
    assert got["payments"][0]["failure_code"] == "provider_unavailable"
    provider = use_tiny_provider(rt)
    ref = reference_of(await pay(client, headers, str(o["id"]), "card"))
    await send_webhook(client, provider, ref, "succeeded")
    assert (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()["state"] == "fulfilled"


async def test_webhook_before_our_record_is_retried_not_lost(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    headers, line_id, o = await _plan_order(client, rt)
    ref = reference_of(await pay(client, headers, str(o["id"]), "card"))
    async with unit_of_work(rt.sessions) as s:  # as if our record were not committed yet
        attempt = await s.scalar(select(PaymentAttempt).where(PaymentAttempt.provider_ref == ref))
        assert attempt is not None
        attempt.provider_ref = None
    early = await send_webhook(client, provider, ref, "succeeded", event_id="evt_early")
    assert early.status_code == 503
    assert early.headers["Retry-After"] == "30"
    assert await _count(rt, ExternalEvent) == 0
    async with unit_of_work(rt.sessions) as s:
        attempt = await s.get(PaymentAttempt, attempt.id)
        assert attempt is not None
        attempt.provider_ref = ref
    retried = await send_webhook(client, provider, ref, "succeeded", event_id="evt_early")
    assert retried.status_code == 200
    assert retried.json()["outcome"].startswith("paid")
    assert await _count(rt, Bucket, Bucket.line_id == line_id) == 3


async def test_coming_back_from_the_payment_page_shows_the_outcome_at_once(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    headers, line_id, o = await _plan_order(client, rt)
    ref = reference_of(await pay(client, headers, str(o["id"]), "card"))
    provider.settle(ref, "succeeded")  # paid at the provider; no webhook yet
    async with unit_of_work(rt.sessions) as s:
        attempt = await s.scalar(select(PaymentAttempt).where(PaymentAttempt.provider_ref == ref))
        assert attempt is not None and attempt.account_id is not None
        owner = await s.get(Account, attempt.account_id)
    refreshed = await payments.refresh_order(rt, order_id=uuid.UUID(str(o["id"])), viewer=owner)
    assert refreshed.state == "fulfilled"
    assert await _count(rt, Bucket, Bucket.line_id == line_id) == 3
    again = await payments.refresh_order(rt, order_id=uuid.UUID(str(o["id"])), viewer=owner)
    assert again.state == "fulfilled"
    assert await _count(rt, Bucket, Bucket.line_id == line_id) == 3
