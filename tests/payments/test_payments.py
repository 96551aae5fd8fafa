"""Payments: methods, wallet, webhooks exactly once in any order, mismatches, janitor."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from openmvno.db import unit_of_work
from openmvno.ledger.models import Bucket, BucketKind
from openmvno.lines.models import Line, LineState
from openmvno.payments.janitor import settle_stuck
from openmvno.payments.models import AttemptState, ExternalEvent, PaymentAttempt
from openmvno.receipts.models import Receipt
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.orders.helpers import (
    fund_wallet,
    give_line,
    order,
    pay,
    reference_of,
    seed_plans,
    send_webhook,
    signed,
    subscriber,
    use_tiny_provider,
    wallet_minor,
)


async def _plan_order(
    client: httpx.AsyncClient, rt: Runtime, plan: str = "M30"
) -> tuple[dict[str, str], uuid.UUID, Line, dict[str, object]]:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me, state=LineState.grace)
    o = (await order(client, headers, {"kind": "plan", "plan_code": plan,
                                       "line_id": str(line.id)})).json()
    return headers, me, line, o


async def _count(rt: Runtime, model: type, *where: object) -> int:
    async with unit_of_work(rt.sessions) as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _stored(rt: Runtime, order_id: str) -> tuple[str, str, str | None]:
    """(attempt state, order state, order failure code), read from the database (the
    tests move the clock past the access token's life)."""
    from openmvno.orders.models import Order

    async with unit_of_work(rt.sessions) as s:
        o = await s.get(Order, uuid.UUID(order_id))
        a = await s.scalar(select(PaymentAttempt).where(PaymentAttempt.order_id == o.id))  # type: ignore[union-attr]
        assert o is not None
        assert a is not None
        return str(a.state), str(o.state), o.failure_code


async def test_only_enabled_methods_are_offered_and_accepted(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    rt.settings.payment_methods = ["card", "wallet"]
    r = await client.get("/api/v1/payment-methods", headers={"Accept-Language": "zh-CN"})
    assert r.json() == [{"method": "card", "name": "银行卡"},
                        {"method": "wallet", "name": "钱包余额"}]
    headers, _ = await subscriber(client)
    o = (await order(client, headers, {"kind": "topup", "amount_minor": 2000})).json()
    refused = await pay(client, headers, o["id"], "alipay")
    assert refused.status_code == 422
    assert refused.json()["code"] == "payment_method_disabled"


async def test_card_payment_returns_next_action_with_the_result_url(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    headers, _, _, o = await _plan_order(client, rt)
    r = await pay(client, headers, str(o["id"]), "card")
    assert r.status_code == 201, r.text
    assert r.json()["next_action"]["type"] == "redirect"
    assert r.json()["next_action"]["return_url"] == f"http://testserver/orders/{o['id']}/result"
    assert r.json()["order_state"] == "pending_payment"
    assert provider.created == 1


async def test_wallet_short_is_402_and_the_order_stays_payable(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    headers, me, _, o = await _plan_order(client, rt)
    await fund_wallet(rt, me, 4999)
    r = await pay(client, headers, str(o["id"]), "wallet")
    assert r.status_code == 402
    assert r.json()["code"] == "insufficient_balance"
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["state"] == "pending_payment"
    assert await wallet_minor(rt, me) == 4999
    topup = (await order(client, headers, {"kind": "topup", "amount_minor": 2000})).json()
    assert (await pay(client, headers, topup["id"], "wallet")).json()["code"] == (
        "wallet_cannot_topup")


async def test_fifty_parallel_wallet_payments_never_overdraw(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    await fund_wallet(rt, me, 20 * 1500 + 700)  # enough for 20 of the 50 orders
    ids = [
        (await order(client, headers, {"kind": "plan", "plan_code": "D7",
                                       "line_id": str(line.id)})).json()["id"]
        for _ in range(50)
    ]
    answers = await asyncio.gather(*[pay(client, headers, i, "wallet") for i in ids])
    codes = [a.status_code for a in answers]
    assert codes.count(201) == 20
    assert codes.count(402) == 30
    assert await wallet_minor(rt, me) == 700
    async with unit_of_work(rt.sessions) as s:
        wallet = await s.scalar(select(Bucket).where(Bucket.kind == BucketKind.money))
        assert wallet is not None
        assert wallet.remaining == 700
        assert await s.scalar(select(func.count()).select_from(Receipt)) == 20
        line_now = await s.get(Line, line.id)
        assert line_now is not None
        assert line_now.expires_at is not None


async def test_bad_signature_is_400_and_nothing_is_stored(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    use_tiny_provider(rt)
    body, headers = signed({"id": "evt_1", "type": "payment.succeeded"})
    headers["X-Test-Signature"] = "0" * 64
    r = await client.post("/webhooks/testpay", content=body, headers=headers)
    assert r.status_code == 400
    assert r.json()["code"] == "bad_signature"
    assert await _count(rt, ExternalEvent) == 0
    unknown = await client.post("/webhooks/nosuch", content=body, headers=headers)
    assert unknown.status_code == 404


async def test_replayed_and_reordered_webhooks_fulfil_once(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    headers, _, line, o = await _plan_order(client, rt)
    ref = reference_of(await pay(client, headers, str(o["id"]), "card"))
    ok = await send_webhook(client, provider, ref, "succeeded", event_id="evt_ok")
    assert ok.status_code == 200
    assert ok.json()["outcome"].startswith("paid")
    replays = await asyncio.gather(*[
        send_webhook(client, provider, ref, "succeeded", event_id="evt_ok") for _ in range(10)
    ])
    assert {r.status_code for r in replays} == {200}
    assert {r.json()["outcome"] for r in replays} == {"duplicate: already received"}
    late_fail = await send_webhook(client, provider, ref, "failed", event_id="evt_late",
                                   failure_code="declined")
    assert late_fail.json()["outcome"] == "ignored: failure after success"
    other_success = await send_webhook(client, provider, ref, "succeeded", event_id="evt_dup2")
    assert other_success.json()["outcome"] == "ignored: attempt already succeeded"
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["state"] == "fulfilled"
    assert got["payments"][0]["state"] == "succeeded"
    assert await _count(rt, Bucket, Bucket.line_id == line.id) == 3
    assert await _count(rt, Receipt) == 1
    assert await _count(rt, ExternalEvent) == 3
    async with unit_of_work(rt.sessions) as s:
        line_now = await s.get(Line, line.id)
        assert line_now is not None
        assert line_now.state == LineState.active


async def test_failed_card_then_success_with_another_method(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    headers, _, line, o = await _plan_order(client, rt)
    card = reference_of(await pay(client, headers, str(o["id"]), "card"))
    await send_webhook(client, provider, card, "failed", failure_code="insufficient_funds")
    failed = (await client.get(f"/api/v1/orders/{o['id']}",
                               headers={**headers, "Accept-Language": "zh-CN"})).json()
    assert failed["state"] == "pending_payment"
    assert failed["failure_code"] == "insufficient_funds"
    assert failed["failure_reason"] == "支付被拒：余额不足，请换一种支付方式。"
    assert await _count(rt, Bucket, Bucket.line_id == line.id) == 0
    alipay = reference_of(await pay(client, headers, str(o["id"]), "alipay"))
    await send_webhook(client, provider, alipay, "succeeded")
    done = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert done["state"] == "fulfilled"
    assert done["failure_code"] is None
    assert [p["state"] for p in done["payments"]] == ["failed", "succeeded"]
    assert await _count(rt, Bucket, Bucket.line_id == line.id) == 3


async def test_success_after_a_failure_for_the_same_attempt_wins(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    headers, _, _, o = await _plan_order(client, rt)
    ref = reference_of(await pay(client, headers, str(o["id"]), "card"))
    await send_webhook(client, provider, ref, "failed", failure_code="declined")
    r = await send_webhook(client, provider, ref, "succeeded")
    assert r.json()["outcome"].startswith("paid")
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["state"] == "fulfilled"


async def test_amount_mismatch_is_flagged_and_nothing_granted(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    headers, _, line, o = await _plan_order(client, rt)
    ref = reference_of(await pay(client, headers, str(o["id"]), "card"))
    r = await send_webhook(client, provider, ref, "succeeded", amount_minor=1)
    assert r.status_code == 200
    assert r.json()["outcome"].startswith("flagged amount_mismatch")
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["state"] == "pending_payment"
    assert got["failure_code"] == "amount_mismatch"
    assert await _count(rt, Bucket, Bucket.line_id == line.id) == 0
    async with unit_of_work(rt.sessions) as s:
        event = await s.scalar(select(ExternalEvent))
        assert event is not None
        assert "amount_mismatch" in event.outcome


async def test_success_for_a_cancelled_order_is_refunded_not_fulfilled(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    headers, _, line, o = await _plan_order(client, rt)
    ref = reference_of(await pay(client, headers, str(o["id"]), "wechat_pay"))
    cancelled = (await client.post(f"/api/v1/orders/{o['id']}/cancel", headers=headers)).json()
    assert cancelled["payments"][0]["state"] == "failed"
    assert cancelled["payments"][0]["failure_code"] == "cancelled"
    r = await send_webhook(client, provider, ref, "succeeded")
    assert r.json()["outcome"] == (
        "refunding: order already cancelled; not fulfilled, payment refunded")
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["state"] == "cancelled"
    assert got["payments"][0]["state"] == "succeeded"
    assert got["payments"][0]["failure_code"] == "refunded_order_cancelled"
    [refund] = got["result"]["refunds"]
    assert refund["attempt_id"] == got["payments"][0]["id"]
    assert await _count(rt, Bucket, Bucket.line_id == line.id) == 0


async def test_two_methods_both_succeed_the_order_is_fulfilled_once(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    headers, _, line, o = await _plan_order(client, rt)
    a = reference_of(await pay(client, headers, str(o["id"]), "card"))
    b = reference_of(await pay(client, headers, str(o["id"]), "alipay"))
    await asyncio.gather(send_webhook(client, provider, a, "succeeded"),
                         send_webhook(client, provider, b, "succeeded"))
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["state"] == "fulfilled"
    assert sorted(p["failure_code"] or "" for p in got["payments"]) == [
        "", "refunded_already_paid"]
    assert await _count(rt, Bucket, Bucket.line_id == line.id) == 3


@pytest.mark.parametrize(
    ("settle", "expected_attempt", "expected_order"),
    [("succeeded", "succeeded", "fulfilled"), ("failed", "failed", "pending_payment")],
)
async def test_janitor_asks_the_provider_about_stuck_attempts(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock, settle: str,
    expected_attempt: str, expected_order: str,
) -> None:
    provider = use_tiny_provider(rt)
    headers, _, _, o = await _plan_order(client, rt)
    ref = reference_of(await pay(client, headers, str(o["id"]), "card"))
    provider.settle(ref, settle, failure_code="declined" if settle == "failed" else None)  # type: ignore[arg-type]
    assert await settle_stuck(rt, older_than=timedelta(minutes=30)) == 0  # not stuck yet
    frozen.advance(minutes=31)
    assert await settle_stuck(rt, older_than=timedelta(minutes=30)) == 1
    assert await settle_stuck(rt, older_than=timedelta(minutes=30)) == 0  # idempotent
    attempt, order_state, _ = await _stored(rt, str(o["id"]))
    assert attempt == expected_attempt
    assert order_state == expected_order


async def test_janitor_expires_attempts_nobody_answers(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    use_tiny_provider(rt)
    headers, _, _, o = await _plan_order(client, rt)
    await pay(client, headers, str(o["id"]), "bank_transfer")  # still requires_action
    frozen.advance(hours=2)
    assert await settle_stuck(rt, older_than=timedelta(minutes=30)) == 0
    frozen.advance(hours=23)
    assert await settle_stuck(rt, older_than=timedelta(minutes=30)) == 1
    attempt, order_state, failure = await _stored(rt, str(o["id"]))
    assert (attempt, order_state, failure) == ("failed", "pending_payment", "expired")
    async with unit_of_work(rt.sessions) as s:
        n = await s.scalar(select(func.count()).select_from(PaymentAttempt)
                           .where(PaymentAttempt.state == AttemptState.failed))
        assert n == 1


async def test_guest_topup_confirms_the_number_then_credits_the_owner(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    _, owner = await subscriber(client, name="张三明")
    line = await give_line(rt, owner)
    look = await client.post("/api/v1/guest/topup/lookup", json={"msisdn": line.msisdn})
    assert look.status_code == 200
    assert look.json()["owner"] == "张*明"
    assert "****" in look.json()["msisdn"]
    nobody = await client.post("/api/v1/guest/topup/lookup", json={"msisdn": "+8613900000000"})
    assert nobody.status_code == 404
    body = {"kind": "guest_topup", "msisdn": line.msisdn, "amount_minor": 3000}
    first = await order(client, None, body, key="guest-1")
    assert first.status_code == 201, first.text
    again = await order(client, None, body, key="guest-1")  # no second order, no second link
    assert again.json()["code"] == "guest_order_exists"
    guest = f"/api/v1/guest/orders/{first.json()['guest_token']}"
    paying = await client.post(f"{guest}/payments", json={"method": "wallet"})
    assert paying.json()["code"] == "wallet_needs_login"
    ref = reference_of(await client.post(f"{guest}/payments", json={"method": "alipay"}))
    await send_webhook(client, provider, ref, "succeeded")
    got = (await client.get(guest)).json()
    assert got["state"] == "fulfilled"
    assert "wallet_balance_minor" not in got["result"]  # the payer never sees the balance
    assert await wallet_minor(rt, owner) == 3000
    dead = await give_line(rt, owner, state=LineState.terminated)
    refused = await client.post("/api/v1/guest/topup/lookup", json={"msisdn": dead.msisdn})
    assert refused.status_code == 404


async def test_staff_refund_of_a_wallet_paid_plan(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    from openmvno.audit.models import AuditEvent
    from tests.orders.helpers import staff

    headers, me, line, o = await _plan_order(client, rt)
    await fund_wallet(rt, me, 5000)
    assert (await pay(client, headers, str(o["id"]), "wallet")).status_code == 201
    assert await wallet_minor(rt, me) == 0
    denied = await client.post(f"/api/v1/orders/{o['id']}/refund", json={"reason": "mine"},
                               headers=headers)
    assert denied.status_code == 403
    agent = await staff(client, rt)
    r = await client.post(f"/api/v1/orders/{o['id']}/refund",
                          json={"reason": "customer changed mind"}, headers=agent)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "refunded"
    assert r.json()["result"]["refund"] == {"to": "wallet", "amount_minor": 5000}
    assert await wallet_minor(rt, me) == 5000
    async with unit_of_work(rt.sessions) as s:
        left = await s.scalar(select(func.sum(Bucket.remaining)).where(Bucket.line_id == line.id))
        assert left == 0
        audit = await s.scalar(select(AuditEvent).where(AuditEvent.action == "order.refund"))
        assert audit is not None
        assert audit.reason == "customer changed mind"
    again = await client.post(f"/api/v1/orders/{o['id']}/refund", json={"reason": "twice"},
                              headers=agent)
    assert again.status_code == 409


async def test_staff_refund_of_a_card_payment_is_requested_at_the_provider(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    from tests.orders.helpers import staff

    provider = use_tiny_provider(rt)
    headers, _, _, o = await _plan_order(client, rt)
    ref = reference_of(await pay(client, headers, str(o["id"]), "card"))
    await send_webhook(client, provider, ref, "succeeded")
    agent = await staff(client, rt)
    r = await client.post(f"/api/v1/orders/{o['id']}/refund", json={"reason": "duplicate"},
                          headers=agent)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["refund"]["status"] == "requested"
    assert r.json()["result"]["refund"]["reference"] == ref
    assert r.json()["result"]["refunds"][0]["id"] == r.json()["result"]["refund"]["refund_id"]


async def test_number_lookups_are_rate_limited_per_client(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    """Masked owner names cannot be harvested: misses count, and the limit lifts in time."""
    rt.settings.guest_lookups_per_hour = 3
    _, owner = await subscriber(client, name="张三明")
    line = await give_line(rt, owner)
    for n in range(3):
        miss = await client.post("/api/v1/guest/topup/lookup", json={"msisdn": f"+861390000000{n}"})
        assert miss.status_code == 404
    blocked = await client.post("/api/v1/guest/topup/lookup", json={"msisdn": line.msisdn},
                                headers={"Accept-Language": "zh-CN"})
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "rate_limited"
    assert "分钟" in blocked.json()["detail"]
    assert int(blocked.headers["Retry-After"]) == 3600
    frozen.advance(minutes=61)
    ok = await client.post("/api/v1/guest/topup/lookup", json={"msisdn": line.msisdn})
    assert ok.status_code == 200
    assert ok.json()["owner"] == "张*明"


async def test_staff_cannot_pay_a_subscribers_order_from_the_subscribers_wallet(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    from tests.orders.helpers import staff

    headers, me, _, o = await _plan_order(client, rt)
    await fund_wallet(rt, me, 100_000)
    agent = await staff(client, rt)
    r = await pay(client, agent, str(o["id"]), "wallet")
    assert r.status_code == 403
    assert r.json()["code"] == "wallet_not_yours"
    assert await wallet_minor(rt, me) == 100_000
    assert (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()["state"] == "pending_payment"
