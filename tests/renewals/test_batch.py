"""``renewals.batch.renew_batch`` (contract 7): a renewal does what a paid order's
fulfilment does (order, buckets, expiry stacking, receipt, history), exactly once per
line and period under replay and concurrency, nothing at all when the wallet is short,
and a fixed number of statements whatever the batch's size."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, text

from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BalanceEntry, Bucket
from openmvno.lines.models import Line, LineState
from openmvno.notifications.models import Notice, OutboxMessage
from openmvno.notifications.notices import NoticeRequest, notify_many
from openmvno.orders.models import Order
from openmvno.payments.models import AttemptState, PaymentAttempt, PaymentMethodKind
from openmvno.receipts import service as receipts
from openmvno.receipts.models import Receipt
from openmvno.renewals.batch import DueRenewal, period_key, renew_batch
from openmvno.renewals.runs import RenewalRun
from openmvno.runtime import Runtime
from tests.conftest import PG_URL, FrozenClock
from tests.orders.helpers import (
    fund_wallet,
    give_line,
    order,
    pay,
    seed_plans,
    subscriber,
    wallet_minor,
)
from tests.portal.helpers import portal_login, text_of


async def _m30(rt: Runtime) -> Plan:
    async with unit_of_work(rt.sessions) as s:
        plan = await s.scalar(select(Plan).where(Plan.code == "M30"))
        assert plan is not None
        return plan


async def _due(rt: Runtime, line_id: uuid.UUID, plan: Plan, **kw: Any) -> DueRenewal:
    async with unit_of_work(rt.sessions) as s:
        line = await s.get(Line, line_id)
        assert line is not None and line.account_id is not None and line.expires_at
        return DueRenewal(line.id, line.account_id, plan.id, period_key(line.expires_at),
                          kw.pop("funding", "wallet"), **kw)


async def _what_an_order_did(rt: Runtime, order_id: uuid.UUID) -> dict[str, Any]:
    """An order's effects with ids, numbers and keys made comparable."""
    async with unit_of_work(rt.sessions) as s:
        o = await s.get(Order, order_id)
        assert o is not None
        line = await s.get(Line, o.line_id)
        receipt = await s.scalar(select(Receipt).where(Receipt.order_id == o.id))
        buckets = (await s.scalars(
            select(Bucket).where(Bucket.order_id == o.id).order_by(Bucket.kind)
        )).all()
        entries = (await s.scalars(
            select(BalanceEntry).where(BalanceEntry.order_id == o.id).order_by(BalanceEntry.id)
        )).all()
        attempts = (await s.scalars(
            select(PaymentAttempt).where(PaymentAttempt.order_id == o.id)
        )).all()
        jobs = (await s.scalars(
            select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.like(f"%{o.id}%"))
        )).all()
        assert line is not None and receipt is not None
        await receipts.fill_numbers(s, [o])  # what the API and the portal show
        result = dict(o.result)
        assert result.pop("receipt_number") == receipt.number
        assert result.pop("receipt_id") == str(receipt.id)
        assert result.pop("line_id") == str(line.id) and result.pop("msisdn") == line.msisdn
        result.pop("renewal", None)
        result.pop("activation_code", None)
        return {
            "order": (o.kind, o.state, o.plan_id, o.amount_minor, o.currency, o.description,
                      o.provisioning, o.paid_at is not None, o.fulfilled_at is not None),
            "result": result,
            "line": (line.state, line.expires_at, line.plan_id),
            "buckets": [(b.kind, b.initial, b.remaining, b.valid_from, b.valid_until,
                         b.priority, b.plan_id) for b in buckets],
            "entries": [(e.reason, e.delta, e.idempotency_key.replace(str(o.id), "<order>"),
                         e.memo.replace(o.number, "<number>")) for e in entries],
            "attempts": [(a.method, a.state, a.amount_minor) for a in attempts],
            "receipt": (receipt.number[:6], receipt.account_id == o.account_id, receipt.buyer,
                        receipt.items, receipt.total_minor, receipt.currency,
                        receipt.payment_method),
            "jobs": sorted(j.replace(str(o.id), "<order>") for j in jobs),
        }


async def test_a_renewal_does_what_a_paid_order_does(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    m30 = await _m30(rt)
    expiry = frozen.now + timedelta(days=3)
    ordered_by, bought_id = await subscriber(client, name="Li Lei")
    renewed_by, renewed_id = await subscriber(client, name="Li Lei")
    lines = {}
    for who in (bought_id, renewed_id):
        await fund_wallet(rt, who, 20000)
        lines[who] = await give_line(rt, who, expires_at=expiry)
        async with unit_of_work(rt.sessions) as s:
            line = await s.get(Line, lines[who].id)
            assert line is not None
            line.plan_id = m30.id

    # One subscriber renews by buying the plan again and paying from the wallet ...
    r = await order(client, ordered_by,
                    {"kind": "plan", "plan_code": "M30", "line_id": str(lines[bought_id].id)})
    assert r.status_code == 201, r.text
    assert (await pay(client, ordered_by, r.json()["id"], "wallet")).status_code in (200, 201)
    bought = uuid.UUID(r.json()["id"])
    # ... the other is renewed by the batch.
    due = await _due(rt, lines[renewed_id].id, m30)
    async with unit_of_work(rt.sessions) as s:
        (outcome,) = await renew_batch(s, [due])
    assert outcome.status == "renewed" and outcome.order_id is not None
    assert outcome.expires_at == expiry + timedelta(days=30)  # stacked after the expiry

    a, b = await _what_an_order_did(rt, bought), await _what_an_order_did(rt, outcome.order_id)
    # The same effects; only the message differs: the renewal's own notice instead of
    # the order's "done" SMS.
    assert a.pop("jobs") == ["order-done-sms:<order>", "provision:<order>"]
    assert b.pop("jobs") == ["provision:<order>"]
    assert b == a
    assert b["line"] == (LineState.active, expiry + timedelta(days=30), m30.id)
    assert [x[1:3] for x in b["buckets"]] == [(10 * 1024**3,) * 2, (100,) * 2, (6000,) * 2]
    assert await wallet_minor(rt, renewed_id) == await wallet_minor(rt, bought_id) == 15000
    async with unit_of_work(rt.sessions) as s:
        numbers = sorted((await s.scalars(select(Receipt.number))).all())
        assert numbers == ["R2026-000001", "R2026-000002"]  # one gapless sequence
        assert outcome.receipt_number == "R2026-000002"
        notices = (await s.scalars(select(Notice.key))).all()
        assert notices == [f"renewal_succeeded:{due.line_id}:{due.period_key}"]
        assert await ledger.check(s) == []
    # The history shows the renewal like any paid order, its receipt's number included
    # (the batch numbers receipts after writing the orders: the readers take it from the
    # receipt) — in the API's list and order, and on the portal's order pages.
    history = (await client.get("/api/v1/orders", headers=renewed_by)).json()
    (shown,) = history["items"] if isinstance(history, dict) else history
    assert shown["id"] == str(outcome.order_id) and shown["state"] == "fulfilled"
    assert shown["result"]["receipt_number"] == "R2026-000002"
    one = (await client.get(f"/api/v1/orders/{outcome.order_id}", headers=renewed_by)).json()
    assert one["result"]["receipt_number"] == "R2026-000002"
    assert one["result"]["receipt_url"] == f"/api/v1/receipts/{one['result']['receipt_id']}"
    me = (await client.get("/api/v1/me", headers=renewed_by)).json()
    client.headers.pop("Authorization", None)
    await portal_login(client, me["phone"], "Harbour-Lights-2026")
    listed = await client.get("/orders")
    assert "R2026-000002" in text_of(listed.text)
    detail = await client.get(f"/orders/{outcome.order_id}")
    assert detail.status_code == 200 and f"/receipts/{one['result']['receipt_id']}" in detail.text


async def _world(rt: Runtime, n: int, *, wallet: int, state: LineState = LineState.active,
                 frozen: FrozenClock) -> tuple[Plan, list[DueRenewal]]:
    from tests.ledger.helpers import make_account

    await seed_plans(rt)
    m30 = await _m30(rt)
    due = []
    for _ in range(n):
        async with unit_of_work(rt.sessions) as s:
            account_id = (await make_account(s, "Han Meimei")).id
        if wallet:
            await fund_wallet(rt, account_id, wallet)
        line = await give_line(rt, account_id, state=state,
                               expires_at=frozen.now - timedelta(days=1)
                               if state is not LineState.active else frozen.now)
        due.append(await _due(rt, line.id, m30))
    return m30, due


async def test_a_replay_is_a_duplicate_and_a_short_wallet_changes_nothing(
    rt: Runtime, frozen: FrozenClock
) -> None:
    _m30, due = await _world(rt, 3, wallet=5000, frozen=frozen)
    async with unit_of_work(rt.sessions) as s:
        # The third line's owner spent the money meanwhile.
        w = await ledger.wallet(s, account_id=due[2].account_id, currency="CNY")
        await ledger.debit_wallet(s, account_id=due[2].account_id, currency="CNY",
                                  amount_minor=4000, reason=ledger.EntryReason.payment,
                                  key="spent")
        assert w.remaining == 1000
    async with unit_of_work(rt.sessions) as s:
        first = await renew_batch(s, due)
    assert [o.status for o in first] == ["renewed", "renewed", "insufficient"]
    async with unit_of_work(rt.sessions) as s:
        again = await renew_batch(s, due)
    assert [o.status for o in again] == ["duplicate", "duplicate", "insufficient"]
    async with unit_of_work(rt.sessions) as s:
        assert await s.scalar(select(func.count()).select_from(RenewalRun)) == 2
        assert await s.scalar(select(func.count()).select_from(Order)) == 2
        short = await s.get(Line, due[2].line_id)
        assert short is not None and short.expires_at == frozen.now  # untouched
        assert await s.scalar(select(func.count()).select_from(Bucket).where(
            Bucket.line_id == due[2].line_id)) == 0
        assert await ledger.wallet_balance(s, account_id=due[2].account_id, currency="CNY") == 1000
        assert await ledger.check(s) == []


async def test_a_suspended_line_comes_back_and_a_card_renewal_links_its_payment(
    rt: Runtime, frozen: FrozenClock
) -> None:
    m30, due = await _world(rt, 1, wallet=0, state=LineState.suspended, frozen=frozen)
    async with unit_of_work(rt.sessions) as s:
        attempt = PaymentAttempt(
            order_id=None, account_id=due[0].account_id, provider="sandbox",
            method=PaymentMethodKind.card, amount_minor=m30.price_minor, currency="CNY",
            state=AttemptState.succeeded, next_action={}, provider_ref="ch_1",
        )
        s.add(attempt)
        await s.flush()
        card = DueRenewal(due[0].line_id, due[0].account_id, m30.id, due[0].period_key,
                          "card", attempt.id)
        (outcome,) = await renew_batch(s, [card])
    assert outcome.status == "renewed"
    assert outcome.expires_at == frozen.now + timedelta(days=30)  # lapsed: from now
    async with unit_of_work(rt.sessions) as s:
        line = await s.get(Line, card.line_id)
        assert line is not None and line.state == LineState.active
        linked = await s.get(PaymentAttempt, attempt.id)
        assert linked is not None and linked.order_id == outcome.order_id
        run = await s.scalar(select(RenewalRun))
        assert run is not None and run.payment_attempt_id == attempt.id and run.funding == "card"
        jobs = set((await s.scalars(select(OutboxMessage.kind))).all())
        assert {"provision", "line_state"} <= {str(j) for j in jobs}
        assert await ledger.wallet_balance(s, account_id=card.account_id, currency="CNY") == 0


async def test_two_batches_over_the_same_lines_renew_each_once(
    rt: Runtime, frozen: FrozenClock
) -> None:
    _m30, due = await _world(rt, 12, wallet=6000, frozen=frozen)

    async def run(batch: list[DueRenewal]) -> list[str]:
        async with unit_of_work(rt.sessions) as s:
            return [o.status for o in await renew_batch(s, batch)]

    a, b = await asyncio.gather(run(due), run(list(reversed(due))))
    per_line = [sorted((x, y)) for x, y in zip(a, reversed(b), strict=True)]
    assert per_line == [["duplicate", "renewed"]] * 12
    async with unit_of_work(rt.sessions) as s:
        assert await s.scalar(select(func.count()).select_from(RenewalRun)) == 12
        assert await s.scalar(select(func.count()).select_from(Receipt)) == 12
        for d in due:
            assert await ledger.wallet_balance(s, account_id=d.account_id, currency="CNY") == 1000
        assert await ledger.check(s) == []


async def test_the_same_statements_for_two_lines_or_thirty(
    rt: Runtime, frozen: FrozenClock
) -> None:
    _m30, due = await _world(rt, 33, wallet=6000, frozen=frozen)
    counts = []
    # The first renewal ever also creates the receipt counter: not counted.
    for batch in (due[:1], due[1:3], due[3:]):
        seen: list[str] = []

        def on_execute(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
            seen.append(statement)  # noqa: B023

        async with unit_of_work(rt.sessions) as s:
            await s.connection()
            event.listen(rt.engine.sync_engine, "before_cursor_execute", on_execute)
            try:
                outcomes = await renew_batch(s, batch)
            finally:
                event.remove(rt.engine.sync_engine, "before_cursor_execute", on_execute)
        assert {o.status for o in outcomes} == {"renewed"}
        counts.append(len(seen))
        # The gapless receipt counter's row stays locked until commit, so every other
        # worker's batch queues behind it: it is taken last, followed only by the
        # receipts (not at the start of the batch; the orders are not written again).
        bump = max(i for i, sql in enumerate(seen) if sql.startswith("UPDATE sequences"))
        after = [" ".join(sql.split()[:3]) for sql in seen[bump + 1:]]
        assert after == ["INSERT INTO receipts"]
        assert not [sql for sql in seen if sql.startswith("UPDATE orders")]
    assert counts[1] == counts[2]


@pytest.mark.skipif(not PG_URL, reason="row locks between two transactions: PostgreSQL")
async def test_a_notice_for_a_line_being_renewed_does_not_wait_for_the_renewal(
    rt: Runtime, frozen: FrozenClock
) -> None:
    """A renewal batch locks its lines; another job queuing a notice for one of them (the
    reminders of a second worker) only checks that the line exists. Before, the renewal's
    ``FOR UPDATE`` made that check wait, and the two could deadlock (seen with four
    workers); the renewal's lock is ``FOR NO KEY UPDATE`` now."""
    m30, (due,) = await _world(rt, 1, wallet=5000, frozen=frozen)
    reminder = NoticeRequest(
        account_id=due.account_id, event="expiry_reminder", line_id=due.line_id,
        key=f"expiry_reminder:{due.line_id}:test:1",
        params={"days_left": 1, "plan": {"zh-CN": m30.name_zh, "en": m30.name_en},
                "expires_at": frozen.now, "amount_minor": m30.price_minor,
                "currency": m30.currency, "auto_renew": True},
    )
    async with unit_of_work(rt.sessions) as renewing:
        (outcome,) = await renew_batch(renewing, [due])
        assert outcome.status == "renewed"
        # The renewal's transaction is still open, holding its locks.
        async with unit_of_work(rt.sessions) as other:
            await other.execute(text("SET LOCAL lock_timeout = '3s'"))
            assert await notify_many(other, [reminder]) == 1
    async with unit_of_work(rt.sessions) as s:
        events = sorted((await s.scalars(select(Notice.event))).all())
    assert events == ["expiry_reminder", "renewal_succeeded"]
