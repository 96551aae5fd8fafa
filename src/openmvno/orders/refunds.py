"""Staff refunds: undo what a fulfilled order granted, pay the payer back, audit it.

A wallet payment goes back to the wallet at once; a provider payment is refunded at the
provider by the worker (:mod:`openmvno.payments.refunds`: one refund per payment,
tracked to completion in ``payment_refunds`` and shown in ``result.refund``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts.models import Account
from openmvno.audit import service as audit
from openmvno.errors import Conflict
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BalanceEntry, EntryReason
from openmvno.lines.models import Line
from openmvno.orders import states
from openmvno.orders.models import Order, OrderKind, OrderState
from openmvno.payments import refunds as provider_refunds
from openmvno.payments.models import AttemptState, PaymentAttempt, RefundReason
from openmvno.runtime import Runtime


async def refund(
    session: AsyncSession, rt: Runtime, order: Order, *, actor: Account, reason: str
) -> Order:
    """Staff: undo a fulfilled (or failed-after-payment) order. What the order granted is
    zeroed (a wallet top-up is taken back from the wallet), the payer is credited: a
    wallet payment goes back to the wallet; a provider payment is refunded at the
    provider through the outbox (``result.refund`` says how far it got). A free order
    (nothing paid) only has its grants undone."""
    await session.refresh(order, with_for_update=True)  # result is rewritten below
    state = OrderState(order.state)
    if not states.can_transition(state, OrderState.refunded):
        raise Conflict("order_not_refundable", states.WHY_NOT[state])
    paid = await _paying_attempt(session, order)
    provider_refund = None
    if (
        paid is not None and paid.method not in ("wallet", "free") and paid.amount_minor > 0
        and not order.result.get("refunded_to")
    ):
        provider_refund = await provider_refunds.request(
            session, attempt=paid, order=order, reason=RefundReason.staff
        )
    result = dict(order.result)
    if state is OrderState.fulfilled:
        if order.kind in (OrderKind.topup, OrderKind.guest_topup):
            credited = await _credited_account(session, order)
            if credited is not None:
                await ledger.debit_wallet(
                    session, account_id=credited, currency=order.currency,
                    amount_minor=order.amount_minor, reason=EntryReason.refund,
                    key=f"order:{order.id}:revoke", order_id=order.id, memo=order.number,
                )
        else:
            result["revoked_buckets"] = await ledger.revoke_order_grants(
                session, order_id=order.id, key=f"order:{order.id}:revoke"
            )
            await _undo_expiry(session, order)
    if paid is not None and paid.method == "wallet" and order.account_id is not None:
        await ledger.credit_wallet(
            session, account_id=order.account_id, currency=order.currency,
            amount_minor=order.amount_minor, reason=EntryReason.refund,
            key=f"order:{order.id}:refund", order_id=order.id, memo=order.number,
        )
        result["refund"] = {"to": "wallet", "amount_minor": order.amount_minor}
    elif paid is not None and provider_refund is not None:
        result["refund"] = {
            "to": "provider", "provider": paid.provider, "reference": paid.provider_ref,
            "amount_minor": provider_refund.amount_minor, "refund_id": str(provider_refund.id),
            "status": provider_refund.state.value,
        }
    result["refund_due"] = False
    await audit.record(
        session, actor=actor, action="order.refund", subject_type="order", subject_id=order.id,
        reason=reason, data={"number": order.number, "amount_minor": order.amount_minor},
    )
    await states.transition(session, order, OrderState.refunded, result=result)
    return order


async def _paying_attempt(session: AsyncSession, order: Order) -> PaymentAttempt | None:
    """The attempt that paid the order; a late duplicate success (refunded on its own,
    listed in ``result.refunds``) is never this one."""
    return await session.scalar(
        select(PaymentAttempt)
        .where(
            PaymentAttempt.order_id == order.id,
            PaymentAttempt.state == AttemptState.succeeded,
            or_(PaymentAttempt.failure_code.is_(None),
                PaymentAttempt.failure_code.not_in(provider_refunds.NOT_REFUNDABLE_CODES)),
        )
        .order_by(PaymentAttempt.settled_at, PaymentAttempt.created_at)
        .limit(1)
    )


async def _credited_account(session: AsyncSession, order: Order) -> uuid.UUID | None:
    """The account whose wallet a top-up credited (from its ledger entry: the number of a
    guest top-up may have changed hands since)."""
    return await session.scalar(
        select(BalanceEntry.account_id).where(
            BalanceEntry.idempotency_key == f"order:{order.id}:topup"
        )
    )


async def _undo_expiry(session: AsyncSession, order: Order) -> None:
    """Give back the period a refunded plan added, unless a later renewal moved it again."""
    if order.kind is OrderKind.addon or order.line_id is None:
        return
    line = await session.get(Line, order.line_id)
    given = order.result.get("expires_at")
    if line is None or given is None or line.expires_at is None:
        return
    if line.expires_at == datetime.fromisoformat(given):
        before = order.result.get("previous_expires_at")
        line.expires_at = datetime.fromisoformat(before) if before else clock.now()


__all__ = ["refund"]
