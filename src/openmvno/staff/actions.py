"""What an agent does for a verified caller: payment links, paying from the wallet, a bank
transfer recorded with its reference, cancelling an order, moving a misdirected top-up,
refunds (an admin's approval above ``console_refund_approval_minor``). Every action is one
audit event with who, what, why and the state before/after; the caller must be verified
(:mod:`openmvno.staff.verification`) — the console checks it before calling these."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts.models import Account, Channel
from openmvno.audit import service as audit
from openmvno.audit.models import AuditEvent
from openmvno.errors import Conflict, Forbidden, InvalidInput, NotFound
from openmvno.i18n import N_, translate
from openmvno.ledger import service as ledger
from openmvno.lines.models import Line
from openmvno.notifications import notices
from openmvno.notifications import service as notifications
from openmvno.orders import refunds as order_refunds
from openmvno.orders import service as orders
from openmvno.orders import states
from openmvno.orders.models import Order, OrderKind, OrderState
from openmvno.payments import service as payments
from openmvno.payments.models import AttemptState, PaymentAttempt, PaymentMethodKind
from openmvno.runtime import Runtime

LINK_TEXT = N_("[{operator}] Pay {amount} for {what} here: {url} (customer service sent you this link at your request).")  # noqa: E501
BANK = "bank"


@dataclass
class PaymentLink:
    order: Order
    url: str
    channel: str


def _money(minor: int, currency: str) -> str:
    return f"{minor / 100:.2f} {currency}"


async def _line_of(session: AsyncSession, account: Account, line_id: uuid.UUID) -> Line:
    line = await session.get(Line, line_id)
    if line is None or line.account_id != account.id:
        raise NotFound("line_not_found", "There is no such line on your account.")
    return line


async def order_of(session: AsyncSession, account: Account, order_id: uuid.UUID) -> Order:
    """One of the account's orders (bought by it, or a top-up credited to it)."""
    order = await session.get(Order, order_id, populate_existing=True)
    if order is None or account.id not in (order.account_id, order.credited_account_id):
        raise NotFound("order_not_found", "There is no such order.")
    return order


async def create_order(
    session: AsyncSession,
    rt: Runtime,
    *,
    staff: Account,
    account: Account,
    kind: str,
    line_id: uuid.UUID | None,
    plan_code: str | None,
    amount_minor: int | None,
    key: str,
    guest_link: str | None = None,
) -> Order:
    """A pending order for the caller: a plan renewal for one of their lines, or a top-up
    of a line's number (credited to the account's wallet)."""
    if kind == "plan":
        if line_id is None or not plan_code:
            raise InvalidInput("plan_required", "Choose the line and the plan.")
        await _line_of(session, account, line_id)
        body: dict[str, Any] = {"kind": "plan", "line_id": str(line_id), "plan_code": plan_code}
        order, _ = await orders.create(
            session, rt, account=account, idempotency_key=key, body=body, language=account.language
        )
    elif kind == "topup":
        if line_id is None or amount_minor is None:
            raise InvalidInput("amount_required", "Choose the line and the amount.")
        line = await _line_of(session, account, line_id)
        body = {"kind": "guest_topup", "msisdn": line.msisdn, "amount_minor": amount_minor}
        order, _ = await orders.create(
            session,
            rt,
            account=None,
            idempotency_key=key,
            body=body,
            language=account.language,
            guest_link=guest_link or orders.new_guest_link(),
        )
    else:
        raise InvalidInput("kind_unknown", "Choose a renewal or a top-up.")
    await audit.record(
        session,
        actor=staff,
        action="console.order_created",
        subject_type="order",
        subject_id=order.id,
        account_id=account.id,
        data={"number": order.number, "kind": kind, "amount_minor": order.amount_minor},
    )
    return order


async def send_payment_link(
    session: AsyncSession,
    rt: Runtime,
    *,
    staff: Account,
    account: Account,
    kind: str,
    line_id: uuid.UUID | None,
    plan_code: str | None,
    amount_minor: int | None,
    channel: Channel,
    key: str,
) -> PaymentLink:
    """A pending order the caller pays on their phone: its link goes by SMS or email to the
    account's own phone or email (never to a number the caller dictates)."""
    target = account.phone if channel is Channel.sms else account.email
    if not target:
        raise InvalidInput(
            "channel_unavailable", "This account has no phone number or email for this channel."
        )
    token = orders.new_guest_link()
    order = await create_order(
        session,
        rt,
        staff=staff,
        account=account,
        kind=kind,
        line_id=line_id,
        plan_code=plan_code,
        amount_minor=amount_minor,
        key=key,
        guest_link=token,
    )
    if order.guest_link_hash is None:
        order.guest_link_hash = orders.link_hash(token)
    url = f"{rt.settings.public_url}/topup/orders/{token}"
    text = translate(
        account.language,
        LINK_TEXT,
        operator=rt.settings.operator_name,
        amount=_money(order.amount_minor, order.currency),
        what=order.description or order.number,
        url=url,
    )
    dedupe = f"console-link:{order.id}"
    if channel is Channel.sms:
        await notifications.send_sms(
            session, to=target, body=text, dedupe_key=dedupe, account_id=account.id
        )
    else:
        await notifications.send_email(
            session,
            to=target,
            subject=translate(account.language, "Your payment link"),
            body=text,
            dedupe_key=dedupe,
            account_id=account.id,
        )
    await audit.record(
        session,
        actor=staff,
        action="console.payment_link",
        subject_type="order",
        subject_id=order.id,
        account_id=account.id,
        data={"number": order.number, "channel": channel.value, "amount_minor": order.amount_minor},
    )
    await session.flush()
    return PaymentLink(order, url, channel.value)


async def pay_from_wallet(
    session: AsyncSession, rt: Runtime, *, staff: Account, account: Account, order: Order
) -> Order:
    before = await ledger.wallet_balance(session, account_id=account.id, currency=order.currency)
    await payments.start(session, rt, order=order, method="wallet", payer=account)
    after = await ledger.wallet_balance(session, account_id=account.id, currency=order.currency)
    await audit.record(
        session,
        actor=staff,
        action="console.wallet_payment",
        subject_type="order",
        subject_id=order.id,
        account_id=account.id,
        data={
            "number": order.number,
            "before": {"wallet_minor": before},
            "after": {"wallet_minor": after, "state": str(order.state)},
        },
    )
    return order


def may_record_bank_transfer(rt: Runtime, staff: Account) -> bool:
    return staff.role.value == "admin" or rt.settings.console_bank_transfer_agents


async def record_bank_transfer(
    session: AsyncSession,
    rt: Runtime,
    *,
    staff: Account,
    account: Account,
    order: Order,
    reference: str,
    reason: str,
) -> Order:
    """A transfer the operator's bank received for this order: recorded with the bank's
    reference (once per reference), the order paid and fulfilled."""
    if not may_record_bank_transfer(rt, staff):
        raise Forbidden("not_allowed", "You are not allowed to record bank transfers.")
    ref = reference.strip()
    if not ref or len(ref) > 120:
        raise InvalidInput("reference_required", "Type the bank's reference of the transfer.")
    if order.state != OrderState.pending_payment:
        raise payments.states_conflict(order)
    seen = await session.scalar(
        select(PaymentAttempt.id).where(
            PaymentAttempt.provider == BANK, PaymentAttempt.provider_ref == ref
        )
    )
    if seen is not None:
        raise Conflict("reference_used", "This bank reference was already recorded.")
    attempt = PaymentAttempt(
        order_id=order.id,
        account_id=order.account_id,
        provider=BANK,
        method=PaymentMethodKind.bank_transfer,
        amount_minor=order.amount_minor,
        currency=order.currency,
        state=AttemptState.succeeded,
        provider_ref=ref,
        next_action={},
        settled_at=clock.now(),
    )
    session.add(attempt)
    await states.transition(session, order, OrderState.paid, code="order_not_payable")
    await session.flush()
    await orders.fulfil(session, rt, order, attempt=attempt)
    await audit.record(
        session,
        actor=staff,
        action="console.bank_transfer",
        subject_type="order",
        subject_id=order.id,
        account_id=account.id,
        reason=reason,
        data={
            "number": order.number,
            "reference": ref,
            "amount_minor": order.amount_minor,
            "before": {"state": "pending_payment"},
            "after": {"state": str(order.state)},
        },
    )
    return order


async def cancel_order(
    session: AsyncSession, *, staff: Account, account: Account, order: Order, reason: str
) -> Order:
    before = str(order.state)
    await orders.cancel(session, order)
    await audit.record(
        session,
        actor=staff,
        action="order.cancel",
        subject_type="order",
        subject_id=order.id,
        account_id=account.id,
        reason=reason,
        data={
            "number": order.number,
            "before": {"state": before},
            "after": {"state": str(order.state)},
        },
    )
    return order


# ---------------------------------------------------------------- misdirected top-ups

TOPUPS = (OrderKind.topup, OrderKind.guest_topup)


async def move_topup(
    session: AsyncSession,
    rt: Runtime,
    *,
    staff: Account,
    order: Order,
    to_msisdn: str,
    reason: str,
) -> AuditEvent:
    """Move the money of a fulfilled top-up that went to the wrong number to the right
    line's account: one ledger transfer (``ledger.transfer_wallet``, once per order), both
    holders notified, one audit event with both wallets before and after."""
    from openmvno.accounts.identity import normalize_phone

    if not reason.strip():
        raise InvalidInput("reason_required", "Say why (it goes into the audit log).")
    if order.kind not in TOPUPS or order.state != OrderState.fulfilled:
        raise Conflict("not_a_topup", "Only a completed top-up can be moved.")
    source_id = order.credited_account_id or order.account_id
    if source_id is None:
        raise Conflict("not_a_topup", "Only a completed top-up can be moved.")
    if order.result.get("moved_to"):
        raise Conflict("already_moved", "This top-up was already moved.")
    number = normalize_phone(to_msisdn, rt.settings.default_region)
    target_line = await session.scalar(select(Line).where(Line.msisdn == number))
    if target_line is None or target_line.account_id is None:
        raise NotFound("line_not_found", "No subscriber has this number.")
    target_id = target_line.account_id
    if target_id == source_id:
        raise InvalidInput("transfer_to_self", "You cannot transfer money to yourself.")
    currency, amount = order.currency, order.amount_minor
    balances_before = {
        "from_wallet_minor": await ledger.wallet_balance(
            session, account_id=source_id, currency=currency
        ),
        "to_wallet_minor": await ledger.wallet_balance(
            session, account_id=target_id, currency=currency
        ),
    }
    if balances_before["from_wallet_minor"] < amount:
        raise Conflict(
            "wallet_spent",
            "The wrong number's wallet no longer holds the whole top-up; refund or adjust instead.",
        )
    await ledger.transfer_wallet(
        session,
        from_account_id=source_id,
        to_account_id=target_id,
        currency=currency,
        amount_minor=amount,
        key=f"topup-move:{order.id}",
        memo=order.number,
    )
    balances_after = {
        "from_wallet_minor": await ledger.wallet_balance(
            session, account_id=source_id, currency=currency
        ),
        "to_wallet_minor": await ledger.wallet_balance(
            session, account_id=target_id, currency=currency
        ),
    }
    order.result = {
        **order.result,
        "moved_to": {"msisdn": number, "account_id": str(target_id), "by": str(staff.id)},
    }
    source_line = await session.get(Line, order.line_id) if order.line_id else None
    params = {"amount_minor": amount, "currency": currency}
    await notices.notify(
        session,
        account_id=source_id,
        event="topup_moved_out",
        key=f"topup_moved_out:{order.id}",
        line_id=source_line.id if source_line else None,
        params={**params, "number": number},
        urgent=True,
    )
    await notices.notify(
        session,
        account_id=target_id,
        event="topup_moved_in",
        key=f"topup_moved_in:{order.id}",
        line_id=target_line.id,
        params={**params, "number": order.msisdn or ""},
        urgent=True,
    )
    return await audit.record(
        session,
        actor=staff,
        action="topup.moved",
        subject_type="order",
        subject_id=order.id,
        account_id=source_id,
        reason=reason,
        data={
            "number": order.number,
            "amount_minor": amount,
            "currency": currency,
            "from_account": str(source_id),
            "to_account": str(target_id),
            "to_msisdn": number,
            "before": balances_before,
            "after": balances_after,
        },
    )


# ---------------------------------------------------------------- refunds


def needs_approval(rt: Runtime, staff: Account, order: Order) -> bool:
    return (
        staff.role.value != "admin"
        and order.amount_minor > rt.settings.console_refund_approval_minor
    )


async def refund_or_request(
    session: AsyncSession,
    rt: Runtime,
    *,
    staff: Account,
    account: Account,
    order: Order,
    reason: str,
) -> str:
    """Refund now (the orders refund service), or — an agent above the approval amount —
    record a request an admin approves on the console ("requested")."""
    if not reason.strip():
        raise InvalidInput("reason_required", "Say why (it goes into the audit log).")
    if needs_approval(rt, staff, order):
        await audit.record(
            session,
            actor=staff,
            action="refund.requested",
            subject_type="order",
            subject_id=order.id,
            account_id=account.id,
            reason=reason,
            data={"number": order.number, "amount_minor": order.amount_minor},
        )
        return "requested"
    await order_refunds.refund(session, rt, order, actor=staff, reason=reason)
    return "refunded"


async def pending_refund_requests(session: AsyncSession) -> list[AuditEvent]:
    """Refund requests no refund has followed yet (newest first)."""
    asked = (
        await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "refund.requested")
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .limit(200)
        )
    ).all()
    out = []
    for event in asked:
        order = await session.get(Order, uuid.UUID(event.subject_id))
        if order is not None and order.state == OrderState.fulfilled:
            out.append(event)
    return out
