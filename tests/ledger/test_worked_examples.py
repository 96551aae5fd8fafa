"""Worked examples: short stories of one subscriber's balances, checking every
balance in the books after each step (in the spirit of django-hordak's worked
examples). ``books()`` also checks the invariant ``remaining == sum(entries)``.

The cast: Li Lei (wallet in CNY, one eSIM line) and sometimes Han Meimei.
The clock starts on 2026-11-25 12:00 UTC; plan M30 costs ¥50.00 and gives
10 GB, 100 minutes and 50 SMS for 30 days.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from openmvno.accounts.models import Account
from openmvno.catalog.models import Plan, PlanKind
from openmvno.db import unit_of_work
from openmvno.errors import InvalidInput
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BalanceEntry, Bucket, BucketKind, EntryReason
from openmvno.lines.models import Line
from openmvno.orders import service as orders
from openmvno.payments import service as payments
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.ledger.helpers import GB, books, make_account, make_line, make_order, make_plan

CNY = "CNY"


@dataclass
class Cast:
    li: Account
    m30: Plan
    line: Line


async def _cast(rt: Runtime) -> Cast:
    async with unit_of_work(rt.sessions) as s:
        li = await make_account(s, "Li Lei")
        m30 = await make_plan(s, "M30")
        line = await make_line(s, li)
    return Cast(li, m30, line)


async def _top_up(rt: Runtime, account_id: uuid.UUID, amount: int, key: str) -> None:
    async with unit_of_work(rt.sessions) as s:
        await ledger.credit_wallet(
            s, account_id=account_id, currency=CNY, amount_minor=amount,
            reason=EntryReason.topup, key=key,
        )


async def test_buy_a_plan_paying_from_the_wallet(rt: Runtime, frozen: FrozenClock) -> None:
    cast = await _cast(rt)
    li, m30, line = cast.li, cast.m30, cast.line
    assert await books(rt) == {}

    # Li Lei tops up ¥100.00.
    await _top_up(rt, li.id, 10000, "topup:1")
    assert await books(rt) == {"Li Lei wallet CNY": 10000}

    # He buys M30: ¥50.00 leaves the wallet and three buckets appear, in one transaction.
    async with unit_of_work(rt.sessions) as s:
        order = await make_order(s, li, line=line, plan=m30)
        await ledger.debit_wallet(
            s, account_id=li.id, currency=CNY, amount_minor=5000,
            reason=EntryReason.payment, key=f"order:{order.id}:pay", order_id=order.id,
        )
        granted = await ledger.grant_plan(
            s, account_id=li.id, line_id=line.id, plan=m30, order_id=order.id,
            valid_from=frozen.now, valid_until=frozen.now + timedelta(days=30),
            key=f"order:{order.id}:grant",
        )
    assert [(b.kind, b.remaining, b.initial) for b in granted] == [
        ("data", 10 * GB, 10 * GB), ("voice", 6000, 6000), ("sms", 50, 50),
    ]
    after_purchase = {
        "Li Lei wallet CNY": 5000,
        "M30 data until 12-25": 10 * GB,
        "M30 voice until 12-25": 6000,
        "M30 sms until 12-25": 50,
    }
    assert await books(rt) == after_purchase

    # The payment webhook arrives twice: the replay changes nothing and returns the same buckets.
    async with unit_of_work(rt.sessions) as s:
        await ledger.debit_wallet(
            s, account_id=li.id, currency=CNY, amount_minor=5000,
            reason=EntryReason.payment, key=f"order:{order.id}:pay", order_id=order.id,
        )
        again = await ledger.grant_plan(
            s, account_id=li.id, line_id=line.id, plan=m30, order_id=order.id,
            valid_from=frozen.now, valid_until=frozen.now + timedelta(days=30),
            key=f"order:{order.id}:grant",
        )
    assert [b.id for b in again] == [b.id for b in granted]
    assert await books(rt) == after_purchase

    # He browses for a day: 1.5 GB, 3 minutes and 2 SMS.
    frozen.advance(days=1)
    async with unit_of_work(rt.sessions) as s:
        data, voice, sms = granted
        for bucket, used, cdr in ((data, 3 * GB // 2, "cdr-1"), (voice, 180, "cdr-2"), (sms, 2, "cdr-3")):
            assert await ledger.post(
                s, bucket_id=bucket.id, account_id=li.id, delta=-used,
                reason=EntryReason.usage, key=cdr,
            )
    assert await books(rt) == {
        "Li Lei wallet CNY": 5000,
        "M30 data until 12-25": 10 * GB - 3 * GB // 2,
        "M30 voice until 12-25": 5820,
        "M30 sms until 12-25": 48,
    }

    # He cannot use more than is left: the usage record is refused and leaves no trace.
    async with unit_of_work(rt.sessions) as s:
        with pytest.raises(ledger.InsufficientBalance):
            await ledger.post(
                s, bucket_id=granted[2].id, account_id=li.id, delta=-49,
                reason=EntryReason.usage, key="cdr-4",
            )
        assert await s.scalar(select(func.count()).where(BalanceEntry.idempotency_key == "cdr-4")) == 0
    assert (await books(rt))["M30 sms until 12-25"] == 48


async def _buy(rt: Runtime, who: Account, line: Line, plan: Plan, kind: str = "plan") -> dict[str, object]:
    """Buy ``plan`` for ``line`` the way a subscriber does: an order paid from the wallet.
    Fulfilment applies the real rules (stacking, add-ons); returns the order's result."""
    async with unit_of_work(rt.sessions) as s:
        order, _ = await orders.create(
            s, rt, account=await s.get(Account, who.id), idempotency_key=uuid.uuid4().hex,
            body={"kind": kind, "line_id": str(line.id), "plan_code": plan.code},
            language="en",
        )
    _, paid = await payments.pay(rt, order_id=order.id, method="wallet", viewer=who)
    assert paid.state == "fulfilled", paid.failure_code
    return dict(paid.result or {})


async def _expiry(rt: Runtime, line: Line) -> datetime | None:
    async with unit_of_work(rt.sessions) as s:
        found = await s.get(Line, line.id)
        assert found is not None
        return found.expires_at


async def test_renew_early_stacks_the_new_buckets_after_the_current_expiry(
    rt: Runtime, frozen: FrozenClock
) -> None:
    cast = await _cast(rt)
    li, m30, line = cast.li, cast.m30, cast.line
    await _top_up(rt, li.id, 10000, "topup:1")
    await _buy(rt, li, line, m30)
    assert await _expiry(rt, line) == frozen.now + timedelta(days=30)
    async with unit_of_work(rt.sessions) as s:
        first = await s.scalar(select(Bucket).where(Bucket.kind == BucketKind.data))
        assert first is not None
        await ledger.post(
            s, bucket_id=first.id, account_id=li.id, delta=-4 * GB,
            reason=EntryReason.usage, key="cdr-1",
        )
    assert await books(rt) == {
        "Li Lei wallet CNY": 5000,
        "M30 data until 12-25": 6 * GB, "M30 voice until 12-25": 6000, "M30 sms until 12-25": 50,
    }

    # Day 20: he renews. The new period runs from the current expiry (12-25) for 30
    # days, so nothing he paid for is lost; the line's expiry moves to 01-24.
    frozen.advance(days=20)
    await _buy(rt, li, line, m30)
    assert await _expiry(rt, line) == frozen.now + timedelta(days=10 + 30)
    assert await books(rt) == {
        "Li Lei wallet CNY": 0,
        "M30 data until 12-25": 6 * GB, "M30 voice until 12-25": 6000, "M30 sms until 12-25": 50,
        "M30 data until 01-24": 10 * GB, "M30 voice until 01-24": 6000, "M30 sms until 01-24": 50,
    }
    # What he can use today is still the first period; the renewal waits its turn.
    async with unit_of_work(rt.sessions) as s:
        view = await ledger.line_balance(s, line=line, language="en")
    assert [(t.kind, t.remaining) for t in view.totals] == [
        ("data", 6 * GB), ("voice", 6000), ("sms", 50),
    ]
    assert [b.active for b in view.buckets if b.kind == "data"] == [True, False]

    # Day 31: the first period expires; the renewal is what is left.
    frozen.advance(days=11)
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.expire_due(s) == 3
    assert await books(rt) == {
        "Li Lei wallet CNY": 0,
        "M30 data until 12-25": 0, "M30 voice until 12-25": 0, "M30 sms until 12-25": 0,
        "M30 data until 01-24": 10 * GB, "M30 voice until 01-24": 6000, "M30 sms until 01-24": 50,
    }
    async with unit_of_work(rt.sessions) as s:
        view = await ledger.line_balance(s, line=line, language="en")
        assert await ledger.expire_due(s) == 0  # nothing twice
    assert [(t.kind, t.remaining) for t in view.totals] == [
        ("data", 10 * GB), ("voice", 6000), ("sms", 50),
    ]


async def test_renew_after_expiry_starts_now(rt: Runtime, frozen: FrozenClock) -> None:
    cast = await _cast(rt)
    li, m30, line = cast.li, cast.m30, cast.line
    await _top_up(rt, li.id, 10000, "topup:1")
    await _buy(rt, li, line, m30)

    # He forgets. On day 35 the worker expires what was left.
    frozen.advance(days=35)
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.expire_due(s) == 3
    expired = {"M30 data until 12-25": 0, "M30 voice until 12-25": 0, "M30 sms until 12-25": 0}
    assert await books(rt) == expired | {"Li Lei wallet CNY": 5000}

    # He renews on day 35: the new period starts now (12-30), not at the old expiry,
    # and ends 01-29.
    result = await _buy(rt, li, line, m30)
    assert await _expiry(rt, line) == frozen.now + timedelta(days=30)
    assert {g["valid_from"] for g in result["granted"]} == {frozen.now.isoformat()}  # type: ignore[union-attr]
    assert await books(rt) == expired | {
        "Li Lei wallet CNY": 0,
        "M30 data until 01-29": 10 * GB, "M30 voice until 01-29": 6000, "M30 sms until 01-29": 50,
    }


async def test_an_add_on_is_its_own_bucket_and_never_moves_the_expiry(
    rt: Runtime, frozen: FrozenClock
) -> None:
    cast = await _cast(rt)
    li, m30, line = cast.li, cast.m30, cast.line
    expiry = frozen.now + timedelta(days=30)
    async with unit_of_work(rt.sessions) as s:
        booster = await make_plan(
            s, "BOOST5", kind=PlanKind.addon, price_minor=1000, data_bytes=5 * GB,
            voice_seconds=0, sms_count=0, validity_days=7,
        )
    await _top_up(rt, li.id, 6000, "topup:1")
    await _buy(rt, li, line, m30)
    frozen.advance(days=3)
    result = await _buy(rt, li, line, booster, kind="addon")
    assert [g["kind"] for g in result["granted"]] == ["data"]  # type: ignore[union-attr]
    assert await _expiry(rt, line) == expiry  # the add-on never moves it
    assert await books(rt) == {
        "Li Lei wallet CNY": 0,
        "M30 data until 12-25": 10 * GB, "M30 voice until 12-25": 6000, "M30 sms until 12-25": 50,
        "BOOST5 data until 12-05": 5 * GB,
    }
    async with unit_of_work(rt.sessions) as s:
        the_line = await s.get(Line, line.id)
        assert the_line is not None
        view = await ledger.line_balance(s, line=the_line, language="en")
        # used before the plan's data (lower priority number first)
        assert next(b.priority for b in view.buckets if b.kind == "data") < 100
    assert [(t.kind, t.remaining) for t in view.totals] == [("data", 15 * GB), ("voice", 6000), ("sms", 50)]

    # A week later the booster is gone, the plan is untouched.
    frozen.advance(days=7)
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.expire_due(s) == 1
    assert await books(rt) == {
        "Li Lei wallet CNY": 0,
        "M30 data until 12-25": 10 * GB, "M30 voice until 12-25": 6000, "M30 sms until 12-25": 50,
        "BOOST5 data until 12-05": 0,
    }
    assert await _expiry(rt, line) == expiry


async def test_an_add_on_never_outlives_the_line(rt: Runtime, frozen: FrozenClock) -> None:
    cast = await _cast(rt)
    li, m30, line = cast.li, cast.m30, cast.line
    async with unit_of_work(rt.sessions) as s:
        booster = await make_plan(
            s, "BOOST60", kind=PlanKind.addon, price_minor=1000, data_bytes=5 * GB,
            voice_seconds=0, sms_count=0, validity_days=60,
        )
    await _top_up(rt, li.id, 6000, "topup:1")
    await _buy(rt, li, line, m30)
    await _buy(rt, li, line, booster, kind="addon")
    # A 60-day add-on on a line that ends in 30 days ends with the line.
    assert "BOOST60 data until 12-25" in await books(rt)


async def test_wallet_top_up_and_pay(rt: Runtime, frozen: FrozenClock) -> None:
    cast = await _cast(rt)
    li = cast.li
    await _top_up(rt, li.id, 2000, "topup:a")
    await _top_up(rt, li.id, 2000, "topup:a")  # a replayed webhook
    assert await books(rt) == {"Li Lei wallet CNY": 2000}
    await _top_up(rt, li.id, 1500, "topup:b")
    assert await books(rt) == {"Li Lei wallet CNY": 3500}

    # ¥50.00 does not fit in ¥35.00: refused, nothing changes, the error says why.
    with pytest.raises(ledger.InsufficientBalance) as refused:
        async with unit_of_work(rt.sessions) as s:
            await ledger.debit_wallet(
                s, account_id=li.id, currency=CNY, amount_minor=5000,
                reason=EntryReason.payment, key="pay:1",
            )
    assert refused.value.code == "insufficient_balance" and refused.value.status == 402
    assert await books(rt) == {"Li Lei wallet CNY": 3500}

    # ¥35.00 exactly fits, down to zero.
    async with unit_of_work(rt.sessions) as s:
        w = await ledger.debit_wallet(
            s, account_id=li.id, currency=CNY, amount_minor=3500,
            reason=EntryReason.payment, key="pay:2",
        )
        assert w.remaining == 0
    assert await books(rt) == {"Li Lei wallet CNY": 0}

    # Amounts are positive integers of fen; anything else is refused.
    async with unit_of_work(rt.sessions) as s:
        for bad in (0, -100):
            with pytest.raises(InvalidInput):
                await ledger.credit_wallet(
                    s, account_id=li.id, currency=CNY, amount_minor=bad,
                    reason=EntryReason.topup, key=f"bad:{bad}",
                )
    assert await books(rt) == {"Li Lei wallet CNY": 0}


async def test_refund_takes_back_what_is_left_and_credits_the_wallet(
    rt: Runtime, frozen: FrozenClock
) -> None:
    cast = await _cast(rt)
    li, m30, line = cast.li, cast.m30, cast.line
    await _top_up(rt, li.id, 5000, "topup:1")
    async with unit_of_work(rt.sessions) as s:
        order = await make_order(s, li, line=line, plan=m30)
        await ledger.debit_wallet(
            s, account_id=li.id, currency=CNY, amount_minor=5000,
            reason=EntryReason.payment, key="pay", order_id=order.id,
        )
        data, *_ = await ledger.grant_plan(
            s, account_id=li.id, line_id=line.id, plan=m30, order_id=order.id,
            valid_from=frozen.now, valid_until=frozen.now + timedelta(days=30), key="grant",
        )
        await ledger.post(
            s, bucket_id=data.id, account_id=li.id, delta=-GB,
            reason=EntryReason.usage, key="cdr-1",
        )
    assert await books(rt) == {
        "Li Lei wallet CNY": 0,
        "M30 data until 12-25": 9 * GB, "M30 voice until 12-25": 6000, "M30 sms until 12-25": 50,
    }

    # Support refunds the order: the allowances go, the money comes back.
    for _attempt in range(2):  # the second time is a replay and does nothing
        async with unit_of_work(rt.sessions) as s:
            touched = await ledger.revoke_order_grants(s, order_id=order.id, key="refund-1")
            await ledger.credit_wallet(
                s, account_id=li.id, currency=CNY, amount_minor=5000,
                reason=EntryReason.refund, key="refund-1:money", order_id=order.id,
            )
        assert touched == (3 if _attempt == 0 else 0)
        assert await books(rt) == {
            "Li Lei wallet CNY": 5000,
            "M30 data until 12-25": 0, "M30 voice until 12-25": 0, "M30 sms until 12-25": 0,
        }
    # The balance screen no longer shows the refunded plan's empty buckets.
    async with unit_of_work(rt.sessions) as s:
        view = await ledger.line_balance(s, line=line, language="en")
    assert view.buckets == [] and view.wallet.minor == 5000


async def test_transfer_between_wallets(rt: Runtime, frozen: FrozenClock) -> None:
    async with unit_of_work(rt.sessions) as s:
        li = await make_account(s, "Li Lei")
        han = await make_account(s, "Han Meimei")
    await _top_up(rt, li.id, 10000, "topup:1")
    assert await books(rt) == {"Li Lei wallet CNY": 10000}

    async def transfer(amount: int, key: str) -> None:
        async with unit_of_work(rt.sessions) as s:
            await ledger.transfer_wallet(
                s, from_account_id=li.id, to_account_id=han.id, currency=CNY,
                amount_minor=amount, key=key,
            )

    await transfer(3000, "gift-1")
    assert await books(rt) == {"Li Lei wallet CNY": 7000, "Han Meimei wallet CNY": 3000}
    await transfer(3000, "gift-1")  # a double click
    assert await books(rt) == {"Li Lei wallet CNY": 7000, "Han Meimei wallet CNY": 3000}
    with pytest.raises(ledger.InsufficientBalance):
        await transfer(8000, "gift-2")
    assert await books(rt) == {"Li Lei wallet CNY": 7000, "Han Meimei wallet CNY": 3000}
    with pytest.raises(InvalidInput):
        async with unit_of_work(rt.sessions) as s:
            await ledger.transfer_wallet(
                s, from_account_id=li.id, to_account_id=li.id, currency=CNY,
                amount_minor=100, key="self",
            )
    await transfer(7000, "gift-3")
    assert await books(rt) == {"Li Lei wallet CNY": 0, "Han Meimei wallet CNY": 10000}


async def test_expiry_sweeps_only_what_is_due(rt: Runtime, frozen: FrozenClock) -> None:
    cast = await _cast(rt)
    li, m30, line = cast.li, cast.m30, cast.line
    await _top_up(rt, li.id, 800, "topup:1")
    async with unit_of_work(rt.sessions) as s:
        weekly = await make_plan(
            s, "W7", data_bytes=GB, voice_seconds=0, sms_count=10, validity_days=7
        )
        await ledger.grant_plan(
            s, account_id=li.id, line_id=line.id, plan=m30, order_id=None,
            valid_from=frozen.now, valid_until=frozen.now + timedelta(days=30), key="m30",
        )
        await ledger.grant_plan(
            s, account_id=li.id, line_id=line.id, plan=weekly, order_id=None,
            valid_from=frozen.now, valid_until=frozen.now + timedelta(days=7), key="w7",
        )
    everything = {
        "Li Lei wallet CNY": 800,
        "M30 data until 12-25": 10 * GB, "M30 voice until 12-25": 6000, "M30 sms until 12-25": 50,
        "W7 data until 12-02": GB, "W7 sms until 12-02": 10,
    }
    frozen.advance(days=6, hours=23)
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.expire_due(s) == 0
    assert await books(rt) == everything
    frozen.advance(hours=1)  # exactly valid_until: gone
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.expire_due(s) == 2
    assert await books(rt) == everything | {"W7 data until 12-02": 0, "W7 sms until 12-02": 0}
    frozen.advance(days=400)  # the wallet never expires
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.expire_due(s) == 3
    assert await books(rt) == {
        "Li Lei wallet CNY": 800,
        "M30 data until 12-25": 0, "M30 voice until 12-25": 0, "M30 sms until 12-25": 0,
        "W7 data until 12-02": 0, "W7 sms until 12-02": 0,
    }
