"""The "order done" notice: one SMS (to the buyer, or to the topped-up number) and one
email when the buyer has an address, each queued once per order in the outbox; and the
"your payment is being refunded" notice for a payment that arrived too late (the order
was cancelled, or already paid), queued once per refund."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.identity import mask_phone
from openmvno.accounts.models import Account
from openmvno.catalog.models import Plan
from openmvno.formatting import Formatter
from openmvno.i18n import N_, translate
from openmvno.notifications import service as notifications
from openmvno.orders.models import Order, OrderKind
from openmvno.runtime import Runtime

SUCCESS_PLAN = N_("{operator}: order {number} is done. {plan} is on {msisdn} until {expiry}.")
SUCCESS_ADDON = N_("{operator}: order {number} is done. Add-on {plan} is on {msisdn}.")
SUCCESS_TOPUP = N_("{operator}: {amount} was added to your wallet. Balance: {balance}.")
SUCCESS_GUEST = N_("{operator}: {amount} was added to the wallet of {msisdn}.")
SUCCESS_SUBJECT = N_("Your order {number} is complete")
REFUND_CANCELLED = N_("{operator}: order {number} was cancelled, but a payment of {amount} "
                      "still arrived. It is being refunded to you automatically; you need "
                      "do nothing.")
REFUND_ALREADY_PAID = N_("{operator}: order {number} was already paid, so your extra payment "
                         "of {amount} is being refunded to you automatically.")
REFUND_NOT_FULFILLED = N_("{operator}: order {number} could not be carried out, so your "
                          "payment of {amount} is being refunded to you automatically.")
REFUND_SUBJECT = N_("Your payment for order {number} is being refunded")
REFUND_TEXTS = {
    "order_cancelled": REFUND_CANCELLED,
    "already_paid": REFUND_ALREADY_PAID,
    "fulfilment_failed": REFUND_NOT_FULFILLED,
}


async def notify_done(
    session: AsyncSession, rt: Runtime, order: Order, buyer: Account | None, plan: Plan | None
) -> None:
    """Queue the success SMS and email for a just-fulfilled ``order``."""
    language = buyer.language if buyer else rt.settings.default_language
    fmt = Formatter(language)
    r = order.result
    params: dict[str, Any] = {
        "operator": rt.settings.operator_name, "number": order.number,
        "amount": fmt.money(order.amount_minor, order.currency),
        "msisdn": order.msisdn or "", "plan": plan.name(language) if plan else "",
    }
    if order.kind is OrderKind.topup:
        balance = fmt.money(int(r.get("wallet_balance_minor", 0)), order.currency)
        body = translate(language, SUCCESS_TOPUP, balance=balance, **params)
    elif order.kind is OrderKind.guest_topup:
        params["msisdn"] = mask_phone(order.msisdn or "")
        body = translate(language, SUCCESS_GUEST, **params)
    elif order.kind is OrderKind.addon:
        body = translate(language, SUCCESS_ADDON, **params)
    else:
        expiry = r.get("expires_at")
        when = fmt.date(datetime.fromisoformat(expiry)) if expiry else "—"
        body = translate(language, SUCCESS_PLAN, expiry=when, **params)
    phone = buyer.phone if buyer else order.msisdn
    if order.kind is OrderKind.guest_topup:
        phone = order.msisdn
    if phone:
        await notifications.send_sms(
            session, to=phone, body=body, dedupe_key=f"order-done-sms:{order.id}",
            account_id=order.account_id,
        )
    if buyer is not None and buyer.email:
        await notifications.send_email(
            session, to=buyer.email, body=body, dedupe_key=f"order-done-email:{order.id}",
            subject=translate(language, SUCCESS_SUBJECT, number=order.number),
            account_id=order.account_id,
        )


async def notify_refunding(
    session: AsyncSession, rt: Runtime, order: Order, *, refund_id: str, reason: str,
    amount_minor: int, currency: str,
) -> None:
    """Tell the buyer (SMS, and email when they have an address) that a payment is being
    refunded automatically; queued once per refund. A guest order has no one to tell."""
    message = REFUND_TEXTS.get(reason)
    if message is None or order.account_id is None:
        return
    buyer = await session.get(Account, order.account_id)
    if buyer is None:
        return
    language = buyer.language or rt.settings.default_language
    body = translate(
        language, message, operator=rt.settings.operator_name, number=order.number,
        amount=Formatter(language).money(amount_minor, currency),
    )
    if buyer.phone:
        await notifications.send_sms(
            session, to=buyer.phone, body=body, dedupe_key=f"refund-sms:{refund_id}",
            account_id=order.account_id,
        )
    if buyer.email:
        await notifications.send_email(
            session, to=buyer.email, body=body, dedupe_key=f"refund-email:{refund_id}",
            subject=translate(language, REFUND_SUBJECT, number=order.number),
            account_id=order.account_id,
        )


__all__ = ["notify_done", "notify_refunding"]
