"""What the shop and order pages show, localised: order titles and states, plan facts,
payment-method choices, the wallet balance, and everything about one order. No routes."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.models import Account
from openmvno.catalog import service as catalog
from openmvno.catalog.models import Plan
from openmvno.channels.portal.web import Visitor
from openmvno.errors import NotFound
from openmvno.formatting import Formatter
from openmvno.i18n import N_, translate
from openmvno.ledger import service as ledger
from openmvno.lines import service as lines
from openmvno.orders import service as orders
from openmvno.orders.models import Order, OrderKind, OrderState
from openmvno.payments import refunds as provider_refunds
from openmvno.payments import service as payments
from openmvno.payments.models import AttemptState
from openmvno.receipts import service as receipts
from openmvno.receipts.service import method_name
from openmvno.runtime import Runtime

OPEN = (AttemptState.created, AttemptState.requires_action)

KIND_TITLES = {
    OrderKind.new_line: N_("New eSIM line"),
    OrderKind.plan: N_("Plan renewal"),
    OrderKind.addon: N_("Add-on"),
    OrderKind.topup: N_("Wallet top-up"),
    OrderKind.guest_topup: N_("Top-up for a phone number"),
}
STATE_TITLES = {
    OrderState.pending_payment: N_("Waiting for payment"),
    OrderState.paid: N_("Paid, being processed"),
    OrderState.fulfilled: N_("Completed"),
    OrderState.cancelled: N_("Cancelled"),
    OrderState.refunded: N_("Refunded"),
    OrderState.failed: N_("Failed"),
}


def new_key() -> str:
    """The hidden idempotency key of one rendered confirm form."""
    return secrets.token_urlsafe(18)


def portal_may_see(order: Order, account: Account | None) -> bool:
    """By id, the subscriber portal shows an order to its owner only; a guest order (no
    owner) only through its link (``/topup/orders/{token}``). Staff use the console,
    which audits them."""
    return account is not None and order.account_id is not None \
        and order.account_id == account.id


def guest_path(link: str) -> str:
    """A guest order's page: the link handed to the guest (the provider returns there)."""
    return f"/topup/orders/{link}"


def result_path(order: Order, link: str | None) -> str:
    """The order's result page: the owner's by id, a guest's through its link."""
    return guest_path(link) if link else f"/orders/{order.id}/result"


async def visible_order(
    session: AsyncSession, order_id: uuid.UUID | None, account: Account | None, *,
    link: str | None = None,
) -> Order:
    """An order this visitor may see or pay in the portal (by its id, their own; a guest
    order by its ``link``), else "not found"."""
    if link is not None:
        return await orders.get_by_link(session, link)
    order = await orders.get_visible(session, order_id, account)
    if not portal_may_see(order, account):
        raise NotFound("order_not_found", "There is no such order.")
    return order


async def plan_names(session: AsyncSession, language: str) -> dict[uuid.UUID, str]:
    """Every plan's name in ``language`` (retired ones too), for order lists."""
    found = await catalog.list_plans(session, include_retired=True)
    return {p.id: p.name(language) for p in found}


def order_what(order: Order, names: dict[uuid.UUID, str], language: str) -> str:
    """What an order is for, in the reader's language: "Plan renewal: All-in"."""
    title = translate(language, KIND_TITLES[OrderKind(order.kind)])
    name = names.get(order.plan_id) if order.plan_id else None
    return translate(language, "{label}: {value}", label=title, value=name) if name else title


async def wallet_minor(session: AsyncSession, rt: Runtime, account: Account | None) -> int:
    """The account's wallet balance in minor units (0 without an account)."""
    if account is None:
        return 0
    return await ledger.wallet_balance(
        session, account_id=account.id, currency=rt.settings.default_currency
    )


def method_choices(
    request: Request, rt: Runtime, *, wallet: bool, wallet_balance: int = 0,
    price_minor: int | None = None,
) -> list[dict[str, Any]]:
    """The operator's payment methods for a form (the wallet with its balance). With the
    order's ``price_minor``, a wallet that cannot cover it is offered disabled, with the
    shortfall and a link to top it up."""
    lang = request.state.language
    fmt = Formatter(lang)
    cur = rt.settings.default_currency
    out = []
    for m in payments.enabled_methods(rt):
        if m == payments.WALLET and not wallet:
            continue
        label = method_name(m, lang)
        choice: dict[str, Any] = {"value": m, "label": label, "disabled": False}
        if m == payments.WALLET:
            balance = fmt.money(wallet_balance, cur)
            choice["label"] = translate(lang, "{method} (balance {balance})", method=label,
                                        balance=balance)
            short = (price_minor or 0) - wallet_balance
            if price_minor is not None and short > 0:
                choice["disabled"] = True
                choice["shortfall"] = translate(
                    lang, "Not enough balance: {amount} short.", amount=fmt.money(short, cur)
                )
                choice["topup_url"] = "/wallet/topup?" + urlencode(
                    {"amount": str(Decimal(max(short, rt.settings.topup_min_minor)) / 100)}
                )
        out.append(choice)
    return out


def pay_form(
    methods: list[dict[str, Any]], *, key: str | None, method: str
) -> dict[str, Any]:
    """The confirm form's methods, the preselected one and its idempotency key (the one
    sent back after an error, else a fresh one). A disabled method is never preselected."""
    usable = [m["value"] for m in methods if not m.get("disabled")]
    chosen = method if method in usable else (usable[0] if usable else "")
    return {"methods": methods, "chosen": chosen, "key": key or new_key()}


def plan_facts(plan: Plan, lang: str) -> list[tuple[str, str]]:
    """Price, validity and allowances of a plan, as label/value pairs."""
    fmt = Formatter(lang)
    facts = [(translate(lang, "Price"), fmt.money(plan.price_minor, plan.currency))]
    if plan.validity_days:
        facts.append((translate(lang, "Valid for"),
                      translate(lang, "{days} days", days=plan.validity_days)))
    if plan.data_bytes:
        facts.append((translate(lang, "Data"), fmt.data(plan.data_bytes)))
    if plan.voice_seconds:
        facts.append((translate(lang, "Calls"), fmt.minutes(plan.voice_seconds)))
    if plan.sms_count:
        facts.append((translate(lang, "SMS"), fmt.sms(plan.sms_count)))
    return facts


def _when(iso: Any) -> datetime | None:
    return datetime.fromisoformat(iso) if isinstance(iso, str) and iso else None


async def order_context(
    request: Request, visitor: Visitor, session: AsyncSession, rt: Runtime, order: Order,
    *, link: str | None = None,
) -> dict[str, Any]:
    """Everything the result and detail pages show about one order, localised (``link``:
    a guest seeing their order through its link: its forms and receipt go there too)."""
    lang = request.state.language
    fmt = Formatter(lang)
    state = OrderState(order.state)
    kind = OrderKind(order.kind)
    mine = visitor.account is not None and order.account_id == visitor.account.id
    await receipts.fill_numbers(session, [order])
    r = order.result or {}
    names = await plan_names(session, lang)
    expires, previous = _when(r.get("expires_at")), _when(r.get("previous_expires_at"))
    ctx: dict[str, Any] = {
        "order": order,
        "state": state.value,
        "state_text": translate(lang, STATE_TITLES[state]),
        "kind_text": order_what(order, names, lang),
        "amount": fmt.money(order.amount_minor, order.currency),
        "created": fmt.date(order.created_at),
        "mine": mine,
        "failure": None,
        "balance": None,
        "expires": fmt.date(expires) if expires else None,
        "previous_expires": fmt.date(previous) if previous else None,
        "activation_code": r.get("activation_code") if mine else None,
        "receipt_id": r.get("receipt_id") if mine else None,
        "receipt_url": None,
        "receipt_number": r.get("receipt_number"),
        "pay_action": (guest_path(link) if link else f"/orders/{order.id}") + "/pay",
        "cancel_action": guest_path(link) + "/cancel" if link else None,
        "guest_link": link is not None,
        "credited": fmt.money(int(r["credited_minor"]), order.currency)
        if "credited_minor" in r else None,
        "wallet_text": None,
        "open_url": None,
        "processing": False,
        "methods": [],
        "plan_name": None,
        "refund_notes": provider_refunds.order_notes(r, lang),
    }
    if state in (OrderState.pending_payment, OrderState.failed):
        ctx["failure"] = orders.failure_reason(lang, order.failure_code)
    if state == OrderState.pending_payment:
        attempts = await orders.attempts_for(session, order.id)
        open_attempts = [a for a in attempts if a.state in OPEN]
        if open_attempts and open_attempts[-1].next_action.get("url"):
            ctx["open_url"] = open_attempts[-1].next_action["url"]
        wallet_ok = mine and kind not in (OrderKind.topup, OrderKind.guest_topup)
        balance = await wallet_minor(session, rt, visitor.account) if wallet_ok else 0
        ctx["methods"] = method_choices(request, rt, wallet=wallet_ok, wallet_balance=balance,
                                        price_minor=order.amount_minor)
    if state == OrderState.fulfilled:
        if order.plan_id:
            ctx["plan_name"] = names.get(order.plan_id)
        if mine and order.line_id is not None and visitor.account is not None:
            try:
                line = await lines.get_owned(
                    session, account_id=visitor.account.id, line_id=order.line_id
                )
            except NotFound:
                line = None
            if line is not None:
                ctx["balance"] = await ledger.line_balance(
                    session, line=line, language=lang, currency=rt.settings.default_currency
                )
        if kind is OrderKind.topup and mine:
            minor = await wallet_minor(session, rt, visitor.account)
            ctx["wallet_text"] = fmt.money(minor, rt.settings.default_currency)
        if kind is OrderKind.guest_topup:
            ctx["masked_msisdn"] = r.get("msisdn", "")
        if "receipt_id" in r and link:
            ctx["receipt_url"] = guest_path(link) + "/receipt"
        elif "receipt_id" in r and mine:
            ctx["receipt_url"] = f"/receipts/{r['receipt_id']}"
    return ctx
