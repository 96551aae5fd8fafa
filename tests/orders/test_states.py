"""Every move of the order state machine, legal or not, against the database."""

from __future__ import annotations

import itertools
import uuid

import pytest

from openmvno.db import unit_of_work
from openmvno.errors import Conflict
from openmvno.orders import states
from openmvno.orders.models import Order, OrderKind, OrderState
from openmvno.runtime import Runtime

S = OrderState
LEGAL = {
    (S.pending_payment, S.paid), (S.pending_payment, S.cancelled), (S.paid, S.fulfilled),
    (S.paid, S.failed), (S.fulfilled, S.refunded), (S.failed, S.refunded),
}


def test_the_table_is_the_documented_machine() -> None:
    table = {(a, b) for a, targets in states.TRANSITIONS.items() for b in targets}
    assert table == LEGAL
    assert all(s in states.WHY_NOT for s in OrderState)


async def _order(rt: Runtime, state: OrderState) -> Order:
    o = Order(number=f"T{uuid.uuid4().hex[:10]}", kind=OrderKind.guest_topup, msisdn="+8613800000000",
              amount_minor=1000, currency="CNY", idempotency_scope="test",
              idempotency_key=uuid.uuid4().hex, request_hash="x", state=state, result={})
    async with unit_of_work(rt.sessions) as s:
        s.add(o)
    return o


@pytest.mark.parametrize(("from_state", "to_state"), list(itertools.product(S, S)))
async def test_every_move(rt: Runtime, from_state: OrderState, to_state: OrderState) -> None:
    o = await _order(rt, from_state)
    async with unit_of_work(rt.sessions) as s:
        order = await s.get(Order, o.id)
        assert order is not None
        moved = await states.try_transition(s, order, to_state)
        assert moved == ((from_state, to_state) in LEGAL)
        assert order.state == (to_state if moved else from_state)
        if moved and to_state in (S.paid, S.fulfilled, S.cancelled, S.refunded):
            assert getattr(order, f"{to_state.value}_at") is not None


async def test_of_two_racing_moves_one_wins(rt: Runtime) -> None:
    o = await _order(rt, S.pending_payment)
    async with unit_of_work(rt.sessions) as s:
        a = await s.get(Order, o.id)
        assert a is not None
        await states.transition(s, a, S.cancelled)
    async with unit_of_work(rt.sessions) as s:
        stale = await s.get(Order, o.id)
        assert stale is not None
        with pytest.raises(Conflict) as err:
            await states.transition(s, stale, S.paid, code="order_not_payable")
        assert err.value.code == "order_not_payable"
        assert err.value.message == states.WHY_NOT[S.cancelled]
