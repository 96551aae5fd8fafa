"""The order state machine, in one place.

::

    pending_payment ──► paid ──► fulfilled ──► refunded
          │               └────► failed ──► refunded
          └──► cancelled (allowed until paid)

Every move is one conditional ``UPDATE orders SET state = :to WHERE id = :id AND
state IN (:allowed sources)``: of two racing moves (a webhook and a cancel, two
wallet payments) exactly one wins, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.errors import Conflict
from openmvno.i18n import N_
from openmvno.orders.models import Order, OrderState

S = OrderState
TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    S.pending_payment: frozenset({S.paid, S.cancelled}),
    S.paid: frozenset({S.fulfilled, S.failed}),
    S.fulfilled: frozenset({S.refunded}),
    S.failed: frozenset({S.refunded}),
    S.cancelled: frozenset(),
    S.refunded: frozenset(),
}
"""Legal moves: ``TRANSITIONS[from]`` is where an order may go next."""

_STAMP = {S.paid: "paid_at", S.fulfilled: "fulfilled_at", S.cancelled: "cancelled_at",
          S.refunded: "refunded_at"}

WHY_NOT: dict[OrderState, str] = {
    S.paid: N_("This order is already paid and is being processed; it can no longer be changed."),
    S.fulfilled: N_("This order is already paid and fulfilled; it can no longer be cancelled."),
    S.cancelled: N_("This order is cancelled."),
    S.refunded: N_("This order has been refunded."),
    S.failed: N_("This order failed after payment; it will be refunded."),
    S.pending_payment: N_("This order is not paid yet."),
}
"""Why an order in a given state cannot take the requested move (shown to the user)."""

WHY_NOT_PAY: dict[OrderState, str] = {
    **WHY_NOT,
    S.fulfilled: N_("This order is already paid and fulfilled; there is nothing left to pay."),
}
"""Why an order in a given state cannot be paid (no word of cancelling)."""


def why_not(order: Order, to_state: OrderState) -> str:
    """Why ``order`` cannot move to ``to_state`` now, in the words of that move."""
    reasons = WHY_NOT_PAY if to_state is S.paid else WHY_NOT
    return reasons[OrderState(order.state)]


def can_transition(from_state: OrderState, to_state: OrderState) -> bool:
    return to_state in TRANSITIONS[from_state]


def sources(to_state: OrderState) -> list[OrderState]:
    """The states from which ``to_state`` may be reached."""
    return [s for s, targets in TRANSITIONS.items() if to_state in targets]


async def try_transition(
    session: AsyncSession, order: Order, to_state: OrderState, **values: Any
) -> bool:
    """Move ``order`` to ``to_state`` if (in the database, now) it is in a legal source
    state; returns False, changing nothing, if another transaction got there first."""
    await session.flush()
    now = clock.now()
    stamp = _STAMP.get(to_state)
    if stamp:
        values.setdefault(stamp, now)
    result = cast(
        CursorResult[Any],
        await session.execute(
            update(Order)
            .where(Order.id == order.id, Order.state.in_(sources(to_state)))
            .values(state=to_state, updated_at=now, **values)
            .execution_options(synchronize_session=False)
        ),
    )
    await session.refresh(order)
    return result.rowcount == 1


async def transition(
    session: AsyncSession,
    order: Order,
    to_state: OrderState,
    *,
    code: str = "order_state_conflict",
    **values: Any,
) -> None:
    """Like :func:`try_transition`, but an illegal move is a 409 (``code``) saying why."""
    if not await try_transition(session, order, to_state, **values):
        raise Conflict(code, why_not(order, to_state))
