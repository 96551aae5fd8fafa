"""Fulfilment: carry out a paid order in the transaction that records the payment's
success, so a paid order is never left without its plan or top-up, receipt,
provisioning job and notice; an order that cannot be carried out fails and its
payment is refunded (wallet at once, a provider payment at the provider through the
outbox, see :mod:`openmvno.payments.refunds`).

Expiry stacking (:func:`_grant`): renewing before expiry adds a period after the
current expiry; after expiry, from now; add-ons never move the expiry.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts.identity import mask_phone
from openmvno.accounts.models import Account
from openmvno.catalog.models import Plan
from openmvno.errors import Conflict
from openmvno.i18n import translate
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BucketKind, EntryReason
from openmvno.lines import lifecycle
from openmvno.lines import service as lines
from openmvno.lines import states as line_states
from openmvno.lines.esim import activation_code
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.lines.states import may_use_service
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxKind
from openmvno.orders import states
from openmvno.orders.models import Order, OrderKind, OrderState, ProvisioningState
from openmvno.orders.notices import notify_done, notify_refunding
from openmvno.orders.texts import GUEST_TOPUP, WALLET_TOPUP
from openmvno.payments import refunds as provider_refunds
from openmvno.payments.models import PaymentAttempt, RefundReason
from openmvno.receipts import service as receipts
from openmvno.runtime import Runtime
from openmvno.usage import barring

log = logging.getLogger("openmvno.orders")

NEEDS_PROVISIONING = (OrderKind.new_line, OrderKind.plan, OrderKind.addon)


class FulfilmentImpossible(Exception):
    """The order was paid but cannot be carried out; it fails and is refunded."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


async def _claim_esim(session: AsyncSession, account_id: uuid.UUID) -> Line:
    """A stock eSIM for the buyer (``lines.claim_inventory`` is race-safe); none left
    means the paid order cannot be carried out."""
    try:
        async with session.begin_nested():
            return await lines.claim_inventory(session, account_id=account_id)
    except Conflict as exc:
        raise FulfilmentImpossible("out_of_stock") from exc


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def _grant(
    session: AsyncSession, rt: Runtime, order: Order, line: Line, plan: Plan
) -> dict[str, Any]:
    """Grant the plan's allowances on the line. Plans stack: renewing before expiry adds a
    period after the current expiry (new buckets valid from then); after expiry, from now.
    Add-ons never move the expiry: their buckets last ``validity_days`` from now but never
    beyond the line's expiry (an add-on with validity 0 lasts until the line's expiry)."""
    now = clock.now()
    previous = line.expires_at
    if order.kind is OrderKind.addon:
        if not may_use_service(line):
            raise FulfilmentImpossible("line_unavailable")
        valid_from = now
        until = now + timedelta(days=plan.validity_days) if plan.validity_days else previous
        if previous is not None and (until is None or until > previous):
            until = previous
        priority = rt.settings.addon_priority
    else:
        valid_from = previous if previous is not None and previous > now else now
        until = valid_from + timedelta(days=plan.validity_days)
        priority = 100
    assert line.account_id is not None
    buckets = await ledger.grant_plan(
        session, account_id=line.account_id, line_id=line.id, plan=plan, order_id=order.id,
        valid_from=valid_from, valid_until=until, key=f"order:{order.id}:grant",
        priority=priority,
    )
    await barring.lift_if_barred(session, line.id)  # usage: a line that ran out may use data again
    if order.kind is not OrderKind.addon:
        line.expires_at = until
        line.plan_id = plan.id
        if line.state != LineState.active:
            lapsed = LineState(line.state)
            await line_states.transition(
                session, line, LineState.active, f"order {order.number} paid"
            )
            # 复机: a grace or suspended line is back; the network and the subscriber hear it.
            await lifecycle.restore_one(session, line, from_state=lapsed, plan=plan)
    await session.flush()
    return {
        "line_id": str(line.id),
        "msisdn": line.msisdn,
        "plan_code": plan.code,
        "previous_expires_at": _iso(previous),
        "expires_at": _iso(line.expires_at),
        "granted": [
            {"kind": BucketKind(b.kind).value, "amount": b.initial,
             "valid_from": _iso(b.valid_from), "valid_until": _iso(b.valid_until)}
            for b in buckets
        ],
    }


async def _confirmed_owner(session: AsyncSession, order: Order) -> tuple[Line, uuid.UUID]:
    """The line and owner a guest confirmed at look-up, if the line still has that number
    and that owner. Otherwise the top-up is not credited to anybody: the order fails and
    the payment is refunded (the guest paid for the person they were shown, and the money
    never goes to a number's new owner)."""
    line = (
        await session.get(Line, order.line_id, with_for_update={"key_share": True},
                          populate_existing=True)
        if order.line_id is not None else None
    )
    if line is None or line.state == LineState.terminated:
        raise FulfilmentImpossible("line_unavailable")
    if (
        order.credited_account_id is None  # created before owners were confirmed
        or line.account_id != order.credited_account_id  # unbound or bound elsewhere since
        or line.msisdn != order.msisdn
    ):
        raise FulfilmentImpossible("number_owner_changed")
    return line, order.credited_account_id


async def _carry_out(
    session: AsyncSession, rt: Runtime, order: Order
) -> tuple[dict[str, Any], Line | None, Plan | None]:
    plan = await session.get(Plan, order.plan_id) if order.plan_id else None
    if order.kind in (OrderKind.topup, OrderKind.guest_topup):
        if order.kind is OrderKind.topup:
            assert order.account_id is not None
            owner_id = order.account_id
            target = None
        else:
            target, owner_id = await _confirmed_owner(session, order)
        wallet = await ledger.credit_wallet(
            session, account_id=owner_id, currency=order.currency,
            amount_minor=order.amount_minor, reason=EntryReason.topup,
            key=f"order:{order.id}:topup", order_id=order.id, memo=order.number,
        )
        await barring.lift_account_bars(session, owner_id)  # the wallet pays for more usage
        result: dict[str, Any] = {"credited_minor": order.amount_minor, "currency": order.currency}
        if order.kind is OrderKind.topup:
            result["wallet_balance_minor"] = wallet.remaining
        else:
            result["msisdn"] = mask_phone(order.msisdn or "")
        return result, target, None
    assert plan is not None
    assert order.account_id is not None
    if order.kind is OrderKind.new_line:
        line = await _claim_esim(session, order.account_id)
        order.line_id = line.id
        order.msisdn = line.msisdn
    else:
        found = await session.get(Line, order.line_id, with_for_update={"key_share": True},
                                  populate_existing=True)
        if (
            found is None
            or found.state == LineState.terminated
            or found.account_id != order.account_id  # unbound or bound elsewhere since
        ):
            raise FulfilmentImpossible("line_unavailable")
        line = found
    result = await _grant(session, rt, order, line, plan)
    if line.kind == LineKind.esim and line.esim_matching_id:
        result["activation_code"] = activation_code(rt, line)
    return result, line, plan


async def fulfil(
    session: AsyncSession, rt: Runtime, order: Order, *, attempt: PaymentAttempt
) -> Order:
    """Carry out a just-paid order in the caller's transaction: grant the plan or credit the
    wallet, move the line back to active, issue the receipt, queue provisioning and the
    success notice. If it cannot be carried out the order fails and the payment is refunded
    (wallet: at once; provider: through the outbox, and the buyer is told)."""
    try:
        async with session.begin_nested():
            result, line, plan = await _carry_out(session, rt, order)
    except FulfilmentImpossible as exc:
        return await _fail_paid(session, rt, order, attempt, exc.code)
    buyer = await session.get(Account, order.account_id) if order.account_id else None
    items = [_item(order, plan)]
    shown = mask_phone(order.msisdn or "") if order.kind is OrderKind.guest_topup else order.msisdn
    receipt = await receipts.issue(
        session, order=order, buyer=buyer.name if buyer else "", msisdn=shown,
        items=items, payment_method=str(attempt.method),
    )
    result.update(receipt_id=str(receipt.id), receipt_number=receipt.number)
    provisioning = ProvisioningState.not_needed
    if order.kind in NEEDS_PROVISIONING and line is not None:
        provisioning = ProvisioningState.pending
        await notifications.enqueue(
            session, kind=OutboxKind.provision, dedupe_key=f"provision:{order.id}",
            recipient=line.msisdn, account_id=order.account_id,
            payload={"order_id": str(order.id)},
        )
    await states.transition(
        session, order, OrderState.fulfilled, result=result, provisioning=provisioning,
        failure_code=None,
    )
    await notify_done(session, rt, order, buyer, plan)
    return order


def _item(order: Order, plan: Plan | None) -> dict[str, Any]:
    if plan is not None:
        names: dict[str, str | None] = {
            "name_zh": plan.name_zh, "name_en": plan.name_en, "code": plan.code,
        }
    else:
        message = WALLET_TOPUP if order.kind is OrderKind.topup else GUEST_TOPUP
        masked = mask_phone(order.msisdn or "")
        names = {"name_zh": translate("zh-CN", message, msisdn=masked),
                 "name_en": translate("en", message, msisdn=masked), "code": None}
    return {**names, "quantity": 1, "amount_minor": order.amount_minor}


async def _fail_paid(
    session: AsyncSession, rt: Runtime, order: Order, attempt: PaymentAttempt, code: str
) -> Order:
    result: dict[str, Any] = {"refund_due": True}
    if attempt.method == "wallet" and order.account_id is not None:
        await ledger.credit_wallet(
            session, account_id=order.account_id, currency=order.currency,
            amount_minor=order.amount_minor, reason=EntryReason.refund,
            key=f"order:{order.id}:refund", order_id=order.id, memo=order.number,
        )
        result = {"refund_due": False, "refunded_to": "wallet"}
    elif attempt.provider_ref and attempt.amount_minor > 0:
        # A provider payment goes back at the provider (the worker sends it) and the buyer
        # is told; ``result.refunds`` follows it to completion.
        refund = await provider_refunds.request(
            session, attempt=attempt, order=order, reason=RefundReason.fulfilment_failed
        )
        result = {"refund_due": False, "refunded_to": "provider",
                  "refunds": order.result.get("refunds", [])}
        await notify_refunding(
            session, rt, order, refund_id=str(refund.id), reason=refund.reason.value,
            amount_minor=refund.amount_minor, currency=refund.currency,
        )
    await states.transition(session, order, OrderState.failed, failure_code=code, result=result)
    log.warning("order failed after payment", extra={"order": order.number, "code": code})
    return order


__all__ = ["NEEDS_PROVISIONING", "FulfilmentImpossible", "fulfil"]
