"""Provider refunds, tracked to completion.

A refund is asked for inside the transaction that decides it (a capture that landed on
a cancelled or already-paid order, a staff refund): :func:`request` writes one
``payment_refunds`` row per payment attempt (UNIQUE ``attempt:<id>``) and an outbox job
in that same transaction. The worker delivers the job with :func:`deliver`: it reads the
row, calls the provider **outside any transaction** with our refund id as the provider's
idempotency key, and records the answer. A passing fault (network, 5xx) is retried with
the outbox's backoff and the same key, so the money goes back once however often the job
runs; a refusal the provider would repeat fails the refund for staff to look at. A refund
the provider reports as pending is followed by the payments janitor
(:func:`follow_pending`).

The order shows its refunds in ``result["refunds"]`` (id, attempt, amount, reason,
state), kept in step with the rows here.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.adapters.payments import ProviderRefund, RefundRefused
from openmvno.db import unit_of_work
from openmvno.formatting import Formatter
from openmvno.i18n import N_, translate
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxKind, OutboxMessage
from openmvno.orders.models import Order
from openmvno.payments.models import PaymentAttempt, PaymentRefund, RefundReason, RefundState
from openmvno.runtime import Runtime

log = logging.getLogger("openmvno.payments.refunds")

FINAL = (RefundState.succeeded, RefundState.failed)

AUTO_REFUND_CODES: dict[RefundReason, str] = {
    RefundReason.order_cancelled: "refunded_order_cancelled",
    RefundReason.already_paid: "refunded_already_paid",
}
"""The ``failure_code`` a late capture's attempt carries once it is refunded automatically
(the attempt itself stays ``succeeded``: the provider did capture the money)."""

ATTEMPT_NOTES: dict[str, str] = {
    "refunded_order_cancelled": N_("Refunded automatically: the order was cancelled."),
    "refunded_already_paid": N_("Refunded automatically: the order was already paid."),
}
"""What an attempt with one of :data:`AUTO_REFUND_CODES` shows (API ``failure_reason``)."""

ORDER_NOTES: dict[RefundReason, str] = {
    RefundReason.order_cancelled: N_("{amount} refunded automatically: the order was "
                                     "cancelled."),
    RefundReason.already_paid: N_("{amount} refunded automatically: the order was already "
                                  "paid."),
    RefundReason.fulfilment_failed: N_("{amount} refunded automatically: the order could not "
                                       "be carried out."),
    RefundReason.staff: N_("{amount} refunded to the payment method you used."),
}
REFUND_FAILED_NOTE = N_("The refund of {amount} did not go through; our staff will contact "
                        "you and refund it by hand.")

NOT_REFUNDABLE_CODES = frozenset({"refund_due", *AUTO_REFUND_CODES.values()})
"""Attempt codes of payments that are (or were to be) paid back on their own: never the
payment a staff refund pays back."""


def entry(refund: PaymentRefund) -> dict[str, Any]:
    """What ``order.result["refunds"]`` holds about one refund."""
    return {
        "id": str(refund.id),
        "attempt_id": str(refund.attempt_id),
        "amount_minor": refund.amount_minor,
        "currency": refund.currency,
        "reason": RefundReason(refund.reason).value,
        "state": RefundState(refund.state).value,
    }


def mirrored(result: dict[str, Any], refund: PaymentRefund) -> dict[str, Any]:
    """``result`` (an order's) with this refund's entry added or brought up to date."""
    out = dict(result or {})
    entries = [dict(e) for e in out.get("refunds", []) if isinstance(e, dict)]
    fresh = entry(refund)
    for i, e in enumerate(entries):
        if e.get("id") == fresh["id"]:
            entries[i] = fresh
            break
    else:
        entries.append(fresh)
    out["refunds"] = entries
    staff = out.get("refund")
    if isinstance(staff, dict) and staff.get("refund_id") == fresh["id"]:
        out["refund"] = {**staff, "status": fresh["state"]}
    return out


async def request(
    session: AsyncSession, *, attempt: PaymentAttempt, order: Order, reason: RefundReason
) -> PaymentRefund:
    """Ask for the whole of ``attempt`` to be paid back at its provider, in the caller's
    transaction: one refund per attempt (a second request returns the first), queued in
    the outbox for the worker, and shown in ``order.result["refunds"]``."""
    key = f"attempt:{attempt.id}"
    existing = await _by_key(session, key)
    if existing is not None:
        return existing
    if not attempt.provider_ref:
        raise ValueError(f"attempt {attempt.id} has no provider reference to refund")
    refund = PaymentRefund(
        id=uuid.uuid4(), attempt_id=attempt.id, order_id=order.id, account_id=order.account_id,
        provider=attempt.provider, provider_ref=attempt.provider_ref,
        amount_minor=attempt.amount_minor, currency=attempt.currency, reason=reason,
        state=RefundState.requested, idempotency_key=key, attempts=0, last_error="",
    )
    try:
        async with session.begin_nested():
            session.add(refund)
            await session.flush()
    except IntegrityError:
        existing = await _by_key(session, key)
        if existing is None:
            raise
        return existing
    await notifications.enqueue(
        session, kind=OutboxKind.refund, dedupe_key=f"refund:{refund.id}",
        recipient=attempt.provider_ref, account_id=order.account_id,
        payload={"refund_id": str(refund.id)},
    )
    order.result = mirrored(order.result, refund)
    await session.flush()
    log.info("refund requested", extra={"order": order.number, "refund": str(refund.id),
                                        "reason": reason.value})
    return refund


async def _by_key(session: AsyncSession, key: str) -> PaymentRefund | None:
    return await session.scalar(
        select(PaymentRefund).where(PaymentRefund.idempotency_key == key)
        .execution_options(populate_existing=True)
    )


async def for_order(session: AsyncSession, order_id: uuid.UUID) -> list[PaymentRefund]:
    rows = await session.scalars(
        select(PaymentRefund).where(PaymentRefund.order_id == order_id)
        .order_by(PaymentRefund.created_at, PaymentRefund.id)
    )
    return list(rows.all())


# ---------------------------------------------------------------- sending (worker)


async def deliver(rt: Runtime, message: OutboxMessage) -> str:
    """Outbox handler for :attr:`OutboxKind.refund`: send the refund (or, once sent, ask
    how it is going) and record the answer. Raises on a passing fault, so the outbox
    retries with backoff; the provider idempotency key is the refund id every time."""
    refund_id = uuid.UUID(str(message.payload["refund_id"]))
    async with unit_of_work(rt.sessions) as session:
        refund = await session.get(PaymentRefund, refund_id)
        if refund is None:
            return "ignored: no such refund"
        if refund.state in FINAL:
            return f"ignored: refund already {RefundState(refund.state).value}"
        provider_name, reference = refund.provider, refund.provider_ref
        amount, provider_refund_id = refund.amount_minor, refund.provider_refund_id
    return await _ask(rt, refund_id, provider_name, reference, amount, provider_refund_id)


async def _ask(
    rt: Runtime, refund_id: uuid.UUID, provider_name: str, reference: str, amount: int,
    provider_refund_id: str | None,
) -> str:
    from openmvno.payments.service import provider_for

    try:
        provider = provider_for(rt, provider_name)
        if provider_refund_id:
            answer = await provider.retrieve_refund(provider_refund_id)
        else:
            answer = await provider.refund(reference, amount, idempotency_key=str(refund_id))
    except RefundRefused as exc:
        await _record(rt, refund_id, None, error=f"refused: {exc}")
        return "failed: refused by the provider"
    except Exception as exc:
        log.warning("refund not sent", extra={"refund": str(refund_id)})
        await _record(rt, refund_id, None, error=f"{type(exc).__name__}: {exc}", final=False)
        raise
    await _record(rt, refund_id, answer)
    return f"refund {answer.status}"


async def _record(
    rt: Runtime, refund_id: uuid.UUID, answer: ProviderRefund | None, *, error: str = "",
    final: bool = True,
) -> None:
    """Write down what the provider said (or the error), and mirror it on the order.
    The order row is locked before the refund row, as everywhere that changes both."""
    now = clock.now()
    async with unit_of_work(rt.sessions) as session:
        order_id = await session.scalar(
            select(PaymentRefund.order_id).where(PaymentRefund.id == refund_id)
        )
        if order_id is None:
            return
        order = await session.get(Order, order_id, with_for_update=True, populate_existing=True)
        refund = await session.get(
            PaymentRefund, refund_id, with_for_update=True, populate_existing=True
        )
        if order is None or refund is None or refund.state in FINAL:
            return
        refund.attempts += 1
        if answer is None:
            refund.last_error = error[:500]
            if final:
                refund.state = RefundState.failed
                refund.completed_at = now
                log.error("refund refused by the provider",
                          extra={"refund": str(refund.id), "order": order.number})
        else:
            refund.provider_refund_id = answer.refund_id
            refund.sent_at = refund.sent_at or now
            refund.last_error = (answer.failure_reason or "")[:500]
            if answer.status == "succeeded":
                refund.state = RefundState.succeeded
                refund.completed_at = now
            elif answer.status == "failed":
                refund.state = RefundState.failed
                refund.completed_at = now
                log.error("refund failed at the provider",
                          extra={"refund": str(refund.id), "order": order.number})
            else:
                refund.state = RefundState.sent
        order.result = mirrored(order.result, refund)
        await session.flush()


async def follow_pending(rt: Runtime, *, older_than: timedelta, limit: int = 50) -> int:
    """Ask the provider about refunds it reported as pending (``sent``) and not looked at
    for ``older_than``; returns how many were asked. Run by the payments janitor."""
    async with unit_of_work(rt.sessions) as session:
        rows = (
            await session.execute(
                select(PaymentRefund.id, PaymentRefund.provider, PaymentRefund.provider_ref,
                       PaymentRefund.amount_minor, PaymentRefund.provider_refund_id)
                .where(PaymentRefund.state == RefundState.sent,
                       PaymentRefund.provider_refund_id.is_not(None),
                       PaymentRefund.updated_at < clock.now() - older_than)
                .order_by(PaymentRefund.updated_at)
                .limit(limit)
            )
        ).all()
    for refund_id, provider_name, reference, amount, provider_refund_id in rows:
        try:
            await _ask(rt, refund_id, provider_name, reference, amount, provider_refund_id)
        except Exception:  # noqa: BLE001 - asked again next round
            log.warning("pending refund status unavailable", extra={"refund": str(refund_id)})
    return len(rows)


# ---------------------------------------------------------------- what people see


def order_notes(result: dict[str, Any] | None, language: str) -> list[str]:
    """One sentence per refund of an order, in ``language`` (portal order pages)."""
    fmt = Formatter(language)
    notes: list[str] = []
    for e in (result or {}).get("refunds", []):
        if not isinstance(e, dict):
            continue
        try:
            amount = fmt.money(int(e["amount_minor"]), str(e["currency"]))
            reason = RefundReason(e["reason"])
        except (KeyError, ValueError, TypeError):
            continue
        message = REFUND_FAILED_NOTE if e.get("state") == RefundState.failed.value \
            else ORDER_NOTES[reason]
        notes.append(translate(language, message, amount=amount))
    return notes


def attempt_note(language: str, code: str | None) -> str | None:
    """The sentence for an automatically refunded attempt, else ``None``."""
    message = ATTEMPT_NOTES.get(code or "")
    return translate(language, message) if message else None


__all__ = [
    "AUTO_REFUND_CODES",
    "NOT_REFUNDABLE_CODES",
    "attempt_note",
    "deliver",
    "entry",
    "follow_pending",
    "for_order",
    "mirrored",
    "order_notes",
    "request",
]
