"""Payments: start an attempt with the configured provider (or pay from the wallet),
take provider webhooks exactly once, and apply an outcome to its order.

Rules for outcomes, whatever order they arrive in:
- ``succeeded`` pays the order and fulfils it in the same transaction; a success
  after a ``failed`` for the same attempt wins (the provider captured money);
- ``failed`` after a success is ignored; otherwise the attempt fails with the
  provider's code and the order stays ``pending_payment`` so another method can
  be tried;
- a success whose amount or currency differs from the attempt is flagged
  (``amount_mismatch`` on the attempt and the order) and nothing is granted;
- a success for an order already paid by another attempt, or cancelled, never
  fulfils twice: the attempt is kept ``succeeded`` (the money was captured), is refunded
  at the provider automatically (:mod:`openmvno.payments.refunds`, through the outbox),
  carries ``failure_code = "refunded_order_cancelled"`` / ``"refunded_already_paid"``,
  shows in the order's ``result.refunds``, and the buyer is told.

Cancelling an order queues a ``payment_cancel`` job per open provider payment
(:func:`cancel_at_provider`, run by the worker): the payer can no longer pay it, and a
capture that still lands is refunded as above. A zero-price order needs no payment: it
is fulfilled at once (``provider = "free"``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts.models import Account
from openmvno.adapters.payments import (
    InvalidSignature,
    MalformedEvent,
    PaymentProvider,
    ProviderPayment,
    UnsupportedEvent,
)
from openmvno.db import unit_of_work
from openmvno.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyAttempts,
)
from openmvno.i18n import Term
from openmvno.ledger import service as ledger
from openmvno.ledger.models import EntryReason
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxKind, OutboxMessage
from openmvno.orders import notices, states
from openmvno.orders import service as orders
from openmvno.orders.models import Order, OrderKind, OrderState
from openmvno.payments import refunds
from openmvno.payments.models import (
    AttemptState,
    ExternalEvent,
    PaymentAttempt,
    PaymentMethodKind,
    RefundReason,
)
from openmvno.receipts.service import METHOD_NAMES
from openmvno.runtime import Runtime
from openmvno.staff import runtime_settings

log = logging.getLogger("openmvno.payments")
WALLET = "wallet"
FREE = orders.FREE
OPEN = (AttemptState.created, AttemptState.requires_action)


class BadSignature(DomainError):
    """A webhook that the provider did not sign: 400, nothing stored."""

    status = 400


class MalformedWebhook(DomainError):
    """A signed webhook whose content cannot be taken (wrong types, out of range,
    over-long ids): 400, nothing stored."""

    status = 400


class ProviderUnavailable(DomainError):
    """The payment provider did not answer: 503, the attempt is failed, nothing charged."""

    status = 503


class PaymentNotReady(TooManyAttempts):
    """A webhook about a payment we have not recorded yet: 503 + Retry-After."""

    status = 503


def enabled_methods(rt: Runtime) -> list[str]:
    """The payment methods the operator has switched on, in display order: configured
    (``settings.payment_methods``) and not switched off on the admin console (the
    run-time settings as this process last read them, see ``staff.runtime_settings``)."""
    off = runtime_settings.methods_off(rt)
    return [m.value for m in PaymentMethodKind
            if m.value in rt.settings.payment_methods and m.value not in off]


def provider_for(rt: Runtime, name: str | None = None) -> PaymentProvider:
    """The configured provider (``rt.extras["payment_provider"]`` overrides it, see the
    registry); asking for another ``name`` (a webhook for an unknown provider) is a 404."""
    from openmvno.adapters.payments.registry import payment_provider

    provider = payment_provider(rt.settings, rt)
    if name is not None and name != provider.name:
        raise NotFound("unknown_provider", "There is no payment provider {name}.", name=name)
    return provider


async def start(
    session: AsyncSession, rt: Runtime, *, order: Order, method: str, payer: Account | None
) -> PaymentAttempt:
    """First step of paying ``order`` with ``method``, inside the caller's transaction.
    The wallet pays and fulfils at once (or raises 402 ``insufficient_balance``, leaving
    the order pending); other methods only record a ``created`` attempt — :func:`pay`
    then asks the provider, outside any transaction."""
    await runtime_settings.refresh(session, rt)  # switched off on the console: refused too
    if method not in rt.settings.payment_methods or method in runtime_settings.methods_off(rt):
        raise InvalidInput(
            "payment_method_disabled", "This payment method is not available: {method}.",
            method=Term(METHOD_NAMES[method]) if method in METHOD_NAMES else method,
        )
    if order.state != OrderState.pending_payment:
        raise states_conflict(order)
    if order.amount_minor == 0:
        return await orders.fulfil_free(session, rt, order)
    if method == WALLET:
        return await _pay_from_wallet(session, rt, order=order, payer=payer)
    attempt = PaymentAttempt(
        order_id=order.id, account_id=order.account_id, provider=provider_for(rt).name,
        method=PaymentMethodKind(method), amount_minor=order.amount_minor,
        currency=order.currency, state=AttemptState.created, next_action={},
    )
    session.add(attempt)
    await session.flush()
    return attempt


async def pay(
    rt: Runtime, *, order_id: uuid.UUID | None, method: str, viewer: Account | None,
    guest_link: str | None = None,
) -> tuple[PaymentAttempt, Order]:
    """Pay an order the viewer may see. Three short transactions, never one held open
    across the network: record the attempt; ask the provider; record its answer.
    A crash in between leaves a ``created`` attempt that the janitor settles."""
    async with unit_of_work(rt.sessions) as session:
        # A guest order by its link token; staff paying someone's order is audited.
        order = await orders.get_visible(
            session, order_id, viewer, guest_link=guest_link, audit_as="payment.start"
        )
        attempt = await start(session, rt, order=order, method=method, payer=viewer)
    if attempt.provider in (WALLET, FREE):
        return attempt, order
    return await _ask_provider(rt, attempt, order, guest_link)


def return_url(rt: Runtime, order: Order, guest_link: str | None) -> str:
    """Where the provider sends the payer back: the order's page (a guest's: its link)."""
    if guest_link is not None:
        return f"{rt.settings.public_url}/topup/orders/{guest_link}"
    return f"{rt.settings.public_url}/orders/{order.id}/result"


async def _ask_provider(
    rt: Runtime, attempt: PaymentAttempt, order: Order, guest_link: str | None = None
) -> tuple[PaymentAttempt, Order]:
    provider = provider_for(rt)
    try:
        payment = await provider.create(
            attempt_id=str(attempt.id), amount_minor=attempt.amount_minor,
            currency=attempt.currency, method=str(attempt.method),
            description=order.description or order.number,
            return_url=return_url(rt, order, guest_link),
        )
    except Exception as exc:
        log.exception("payment provider refused", extra={"attempt": str(attempt.id)})
        async with unit_of_work(rt.sessions) as session:
            await _record_failure(session, attempt.id, "provider_unavailable")
        raise ProviderUnavailable(
            "provider_unavailable",
            "The payment service is not answering; nothing was charged. Try again or "
            "choose another method.",
        ) from exc
    async with unit_of_work(rt.sessions) as session:
        row = await _locked_attempt(session, attempt.id)
        if row.provider_ref is None:
            # Recorded whatever happened meanwhile, so the provider's news finds its attempt.
            row.provider_ref = payment.reference
        if row.state == AttemptState.created:
            row.next_action = dict(payment.next_action)
            row.state = AttemptState.requires_action
        elif row.failure_code == "cancelled":
            # The order was cancelled while the provider was creating the payment.
            await _queue_cancel(session, row, key=f"payment-cancel:{row.id}:late")
        await session.flush()
        if payment.status in ("succeeded", "failed"):
            await apply(session, rt, provider_name=provider.name, payment=payment)
        fresh = await session.get(Order, row.order_id, populate_existing=True)
        assert fresh is not None
    return row, fresh


async def _locked_attempt(session: AsyncSession, attempt_id: uuid.UUID) -> PaymentAttempt:
    row = await session.get(
        PaymentAttempt, attempt_id, with_for_update=True, populate_existing=True
    )
    assert row is not None
    return row


async def _record_failure(session: AsyncSession, attempt_id: uuid.UUID, code: str) -> None:
    row = await _locked_attempt(session, attempt_id)
    order = await session.get(Order, row.order_id, populate_existing=True)
    assert order is not None
    await fail_attempt(session, row, order, code)


async def refresh_order(
    rt: Runtime, *, order_id: uuid.UUID | None, viewer: Account | None,
    guest_link: str | None = None,
) -> Order:
    """Ask the provider about the order's open attempts and apply what it says (the
    same idempotent path as a webhook), so a payer coming back from the payment page
    sees the outcome at once, whether or not the webhook has arrived yet."""
    async with unit_of_work(rt.sessions) as session:
        order = await orders.get_visible(session, order_id, viewer, guest_link=guest_link)
        order_id = order.id
        open_refs = [
            (a.provider, a.provider_ref)
            for a in await orders.attempts_for(session, order.id)
            if a.state in OPEN and a.provider_ref and a.provider != WALLET
        ]
    for provider_name, reference in open_refs:
        assert reference is not None
        try:
            payment = await provider_for(rt, provider_name).retrieve(reference)
        except Exception:  # noqa: BLE001 - the webhook or the janitor will settle it later
            log.warning("provider status unavailable", extra={"reference": reference})
            continue
        if payment.status in ("succeeded", "failed"):
            async with unit_of_work(rt.sessions) as session:
                await apply(session, rt, provider_name=provider_name, payment=payment)
    async with unit_of_work(rt.sessions) as session:
        return await orders.get_visible(session, order_id, viewer, guest_link=guest_link)


def states_conflict(order: Order) -> DomainError:
    """The 409 for paying an order that is no longer payable, saying why."""
    return Conflict("order_not_payable", states.why_not(order, OrderState.paid))


async def _pay_from_wallet(
    session: AsyncSession, rt: Runtime, *, order: Order, payer: Account | None
) -> PaymentAttempt:
    if payer is None or order.account_id is None:
        raise InvalidInput("wallet_needs_login", "Log in to pay from your wallet.")
    if payer.id != order.account_id:
        raise Forbidden(
            "wallet_not_yours", "Only the account holder can pay from their own wallet."
        )
    if order.kind in (OrderKind.topup, OrderKind.guest_topup):
        raise InvalidInput("wallet_cannot_topup", "A top-up cannot be paid from the wallet.")
    attempt = PaymentAttempt(
        order_id=order.id, account_id=order.account_id, provider=WALLET,
        method=PaymentMethodKind.wallet, amount_minor=order.amount_minor,
        currency=order.currency, state=AttemptState.created, next_action={},
    )
    session.add(attempt)
    # The conditional state move serialises payments of this order: one wins, others 409.
    await states.transition(session, order, OrderState.paid, code="order_not_payable")
    await ledger.debit_wallet(
        session, account_id=order.account_id, currency=order.currency,
        amount_minor=order.amount_minor, reason=EntryReason.payment,
        key=f"order:{order.id}:wallet", order_id=order.id, memo=order.number,
    )
    attempt.state = AttemptState.succeeded
    attempt.settled_at = clock.now()
    await session.flush()
    await orders.fulfil(session, rt, order, attempt=attempt)
    return attempt


async def handle_webhook(
    session: AsyncSession, rt: Runtime, *, provider_name: str, body: bytes,
    headers: Mapping[str, str],
) -> str:
    """Verify, store once (UNIQUE(source, external_id)), apply; returns the outcome.
    A bad signature is a 400 and nothing is stored; a replay is a no-op."""
    provider = provider_for(rt, provider_name)
    try:
        event = provider.parse_webhook(body, headers)
    except InvalidSignature as exc:
        raise BadSignature("bad_signature", "The webhook signature is not valid.") from exc
    except MalformedEvent as exc:
        raise _malformed() from exc
    except UnsupportedEvent as exc:
        return f"ignored: {str(exc)[:150]}"
    if not (
        0 < len(event.event_id) <= 120 and len(event.event_type) <= 80
        and 0 < len(event.payment.reference) <= 120
        and "\x00" not in event.event_id + event.event_type + event.payment.reference
    ):
        raise _malformed()
    record = ExternalEvent(
        source=provider.name, external_id=event.event_id, event_type=event.event_type,
        payload=event.raw, received_at=clock.now(),
    )
    try:
        async with session.begin_nested():
            session.add(record)
            await session.flush()
    except IntegrityError:
        return "duplicate: already received"
    outcome = await apply(session, rt, provider_name=provider.name, payment=event.payment)
    record.handled_at = clock.now()
    record.outcome = outcome[:200]
    await session.flush()
    return outcome


def _malformed() -> MalformedWebhook:
    return MalformedWebhook(
        "malformed_event", "The webhook is signed but its content is not valid."
    )


async def apply(
    session: AsyncSession, rt: Runtime, *, provider_name: str, payment: ProviderPayment
) -> str:
    """Apply the provider's word on one payment to its attempt and order (idempotent).
    Returns a short outcome for the webhook inbox and logs."""
    attempt = await session.scalar(
        select(PaymentAttempt)
        .where(PaymentAttempt.provider == provider_name,
               PaymentAttempt.provider_ref == payment.reference)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if attempt is None:
        # Possibly our own record of the reference is not committed yet: make the
        # provider retry later rather than dropping the news (the event is not stored).
        raise PaymentNotReady(
            "payment_not_ready", "This payment is not known yet; retry later.", retry_after=30
        )
    if attempt.order_id is None:
        # An off-session charge of a saved card: payments.cards.charge_cards records it.
        return "ignored: saved-card charge"
    order = await session.get(Order, attempt.order_id, populate_existing=True)
    assert order is not None
    if payment.status == "succeeded":
        return await _succeeded(session, rt, attempt, order, payment)
    if payment.status == "failed":
        return await fail_attempt(session, attempt, order, payment.failure_code or "declined")
    return f"noted: {payment.status}"


async def _succeeded(
    session: AsyncSession, rt: Runtime, attempt: PaymentAttempt, order: Order,
    payment: ProviderPayment,
) -> str:
    if attempt.state == AttemptState.succeeded:
        return "ignored: attempt already succeeded"
    if (
        payment.amount_minor != attempt.amount_minor
        or payment.currency.upper() != attempt.currency.upper()
        or attempt.amount_minor != order.amount_minor
    ):
        attempt.state = AttemptState.failed
        attempt.failure_code = "amount_mismatch"
        attempt.settled_at = clock.now()
        if order.state == OrderState.pending_payment:
            order.failure_code = "amount_mismatch"
        await session.flush()
        log.warning("amount mismatch", extra={"order": order.number, "attempt": str(attempt.id)})
        return (
            f"flagged amount_mismatch: paid {payment.amount_minor} {payment.currency}, "
            f"expected {attempt.amount_minor} {attempt.currency}; not fulfilled"
        )
    attempt.state = AttemptState.succeeded
    attempt.failure_code = None
    attempt.settled_at = clock.now()
    await session.flush()
    if not await states.try_transition(session, order, OrderState.paid):
        return await _refund_late_capture(session, rt, attempt, order)
    await orders.fulfil(session, rt, order, attempt=attempt)
    return f"paid: order {OrderState(order.state).value}"


async def _refund_late_capture(
    session: AsyncSession, rt: Runtime, attempt: PaymentAttempt, order: Order
) -> str:
    """Money captured for an order that is cancelled or already paid: pay it back at the
    provider (through the outbox), mark the attempt and tell the buyer. Never fulfils."""
    await session.refresh(order, with_for_update=True)
    state = OrderState(order.state)
    reason = (
        RefundReason.order_cancelled if state is OrderState.cancelled
        else RefundReason.already_paid
    )
    attempt.failure_code = refunds.AUTO_REFUND_CODES[reason]
    refund = await refunds.request(session, attempt=attempt, order=order, reason=reason)
    await notices.notify_refunding(
        session, rt, order, refund_id=str(refund.id), reason=reason.value,
        amount_minor=refund.amount_minor, currency=refund.currency,
    )
    log.warning("payment for a closed order refunded",
                extra={"order": order.number, "attempt": str(attempt.id)})
    return f"refunding: order already {state.value}; not fulfilled, payment refunded"


async def _queue_cancel(session: AsyncSession, attempt: PaymentAttempt, *, key: str) -> None:
    await notifications.enqueue(
        session, kind=OutboxKind.payment_cancel, dedupe_key=key,
        recipient=attempt.provider_ref or attempt.provider, account_id=attempt.account_id,
        payload={"attempt_id": str(attempt.id)},
    )


async def cancel_at_provider(rt: Runtime, message: OutboxMessage) -> str:
    """Outbox handler for :attr:`OutboxKind.payment_cancel`: stop the payment at its
    provider (no transaction held across the call). If the payer had already paid, the
    provider says so and the capture is applied, which refunds it automatically."""
    attempt_id = uuid.UUID(str(message.payload["attempt_id"]))
    async with unit_of_work(rt.sessions) as session:
        attempt = await session.get(PaymentAttempt, attempt_id)
        if attempt is None or not attempt.provider_ref or attempt.provider in (WALLET, FREE):
            return "ignored: nothing to cancel at a provider"
        provider_name, reference = attempt.provider, attempt.provider_ref
    payment = await provider_for(rt, provider_name).cancel(reference)
    if payment.status not in ("succeeded", "failed"):
        return f"noted: {payment.status}"
    async with unit_of_work(rt.sessions) as session:
        return await apply(session, rt, provider_name=provider_name, payment=payment)


async def fail_attempt(
    session: AsyncSession, attempt: PaymentAttempt, order: Order, code: str
) -> str:
    """Record a failure; the order stays payable with a reason (a success is never undone)."""
    if attempt.state == AttemptState.succeeded:
        return "ignored: failure after success"
    if attempt.state == AttemptState.failed:
        return "ignored: attempt already failed"
    attempt.state = AttemptState.failed
    attempt.failure_code = code[:40]
    attempt.settled_at = clock.now()
    if order.state == OrderState.pending_payment:
        order.failure_code = code[:40]
    await session.flush()
    return f"failed: {code}"


def attempt_view(attempt: PaymentAttempt, language: str) -> dict[str, Any]:
    """What an API shows of one attempt."""
    return {
        "id": attempt.id,
        "method": str(attempt.method),
        "provider": attempt.provider,
        "state": str(attempt.state),
        "amount_minor": attempt.amount_minor,
        "currency": attempt.currency,
        "failure_code": attempt.failure_code,
        "failure_reason": _attempt_reason(language, attempt.failure_code),
        "next_action": attempt.next_action if attempt.state in OPEN else {},
        "created_at": attempt.created_at,
    }


def _attempt_reason(language: str, code: str | None) -> str | None:
    if not code or code == "refund_due":
        return None
    return refunds.attempt_note(language, code) or orders.failure_reason(language, code)
