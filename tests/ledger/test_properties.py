"""Random days in the life of two wallets: top-ups, purchases (with a plan's
data bucket), refunds, transfers, and replays of earlier requests. Whatever the
order, the books balance, nothing goes negative, and each wallet equals what a
ten-line model of the rules says."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from openmvno import clock
from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import Bucket, EntryReason
from openmvno.lines.models import Line
from openmvno.orders.models import Order
from openmvno.runtime import Runtime
from tests.ledger.helpers import make_account, make_line, make_order, make_plan

CNY = "CNY"
WHO = st.integers(0, 1)
AMOUNT = st.integers(1, 4000)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("topup"), WHO, AMOUNT),
        st.tuples(st.just("buy"), WHO, AMOUNT),
        st.tuples(st.just("refund"), st.integers(0, 40), st.just(0)),
        st.tuples(st.just("transfer"), WHO, AMOUNT),
        st.tuples(st.just("replay"), st.integers(0, 40), st.just(0)),
    ),
    max_size=30,
)


@dataclass
class World:
    accounts: list[uuid.UUID]
    lines: list[Line]
    plan: Plan
    wallets: list[int] = field(default_factory=lambda: [0, 0])
    applied: set[str] = field(default_factory=set)
    """Keys the model has seen take effect."""
    orders: dict[str, Order] = field(default_factory=dict)
    """Purchase key -> its order; the ones in ``refunded`` were refunded."""
    refunded: set[str] = field(default_factory=set)
    history: list[tuple[str, int, int, str]] = field(default_factory=list)


def _legs(op: tuple[str, int, int, str]) -> list[tuple[int, int]]:
    """(wallet index, delta) the model expects from ``op``."""
    kind, who, amount, _ = op
    if kind == "topup":
        return [(who, amount)]
    if kind == "buy":
        return [(who, -amount)]
    if kind == "transfer":
        return [(who, -amount), (1 - who, amount)]
    return [(who, amount)]  # refund: money back to the buyer


async def _run(rt: Runtime, op: tuple[str, int, int, str], w: World) -> None:
    """Do ``op`` through the ledger in its own transaction."""
    kind, who, amount, key = op
    acc = w.accounts[who]
    async with unit_of_work(rt.sessions) as s:
        if kind == "topup":
            await ledger.credit_wallet(
                s, account_id=acc, currency=CNY, amount_minor=amount,
                reason=EntryReason.topup, key=key,
            )
        elif kind == "buy":
            order = w.orders[key]
            await ledger.debit_wallet(
                s, account_id=acc, currency=CNY, amount_minor=amount,
                reason=EntryReason.payment, key=key, order_id=order.id,
            )
            now = clock.now()
            await ledger.grant_plan(
                s, account_id=acc, line_id=w.lines[who].id, plan=w.plan, order_id=order.id,
                valid_from=now, valid_until=now + timedelta(days=30), key=f"{key}:grant",
            )
        elif kind == "transfer":
            await ledger.transfer_wallet(
                s, from_account_id=acc, to_account_id=w.accounts[1 - who], currency=CNY,
                amount_minor=amount, key=key,
            )
        else:
            purchase = key.removeprefix("refund:")
            await ledger.revoke_order_grants(s, order_id=w.orders[purchase].id, key=key)
            await ledger.credit_wallet(
                s, account_id=acc, currency=CNY, amount_minor=amount,
                reason=EntryReason.refund, key=f"{key}:money", order_id=w.orders[purchase].id,
            )


async def _step(rt: Runtime, op: tuple[str, int, int, str], w: World) -> None:
    """Run ``op``; the ledger must accept or refuse it exactly when the model does.
    A replay of a key that took effect is accepted and changes nothing."""
    kind, _, _, key = op
    legs = _legs(op)
    replay = key in w.applied
    refused = not replay and any(w.wallets[i] + d < 0 for i, d in legs)
    try:
        await _run(rt, op, w)
        outcome = "accepted"
    except ledger.InsufficientBalance:
        outcome = "refused"
    assert outcome == ("refused" if refused else "accepted"), f"{op}: model disagrees"
    if not replay and not refused:
        for i, d in legs:
            w.wallets[i] += d
        w.applied.add(key)
        if kind == "refund":
            w.refunded.add(key.removeprefix("refund:"))


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
async def test_random_histories_keep_the_books_and_match_the_model(
    rt: Runtime, ops: list[tuple[str, int, int]]
) -> None:
    async with unit_of_work(rt.sessions) as s:
        people = [await make_account(s, "Li Lei"), await make_account(s, "Han Meimei")]
        plan = await make_plan(s, f"P{uuid.uuid4().hex[:8]}", voice_seconds=0, sms_count=0)
        lines = [await make_line(s, p) for p in people]
    w = World(accounts=[p.id for p in people], lines=lines, plan=plan)

    for n, (kind, a, b) in enumerate(ops):
        if kind == "replay":
            if not w.history:
                continue
            op = w.history[a % len(w.history)]
        elif kind == "refund":
            bought = [o for o in w.history if o[0] == "buy" and o[3] in w.applied]
            if not bought:
                continue
            _, who, amount, key = bought[a % len(bought)]
            op = ("refund", who, amount, f"refund:{key}")
        else:
            op = (kind, a, b, f"{kind}:{uuid.uuid4().hex}:{n}")
            if kind == "buy":
                async with unit_of_work(rt.sessions) as s:
                    who = people[a]
                    w.orders[op[3]] = await make_order(s, who, amount_minor=b, plan=plan)
        await _step(rt, op, w)
        w.history.append(op)

    async with unit_of_work(rt.sessions) as s:
        assert await ledger.check(s) == []
        for i, acc in enumerate(w.accounts):
            wallet = await ledger.wallet(s, account_id=acc, currency=CNY)
            assert wallet.remaining == w.wallets[i] >= 0
        for key, order in w.orders.items():
            data = await s.scalar(select(Bucket.remaining).where(Bucket.order_id == order.id))
            if key not in w.applied:
                assert data is None  # refused purchases granted nothing
            elif key in w.refunded:
                assert data == 0
            else:
                assert data == plan.data_bytes
