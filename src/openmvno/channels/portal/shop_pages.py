"""Portal checkout: buy or renew a plan, add-ons, wallet top-up, guest top-up, and the
result page the payment provider sends the payer back to (``/orders/{id}/result``).

Exactly once: the confirm page carries a hidden idempotency key made when it was
rendered, so a double click or a resubmitted form finds the first order (and its open
payment) instead of making a second one. Payments go through
:func:`openmvno.payments.service.pay`, which runs its own short transactions; the
request's own transaction is committed first (on SQLite it holds the only write lock).
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.models import Account
from openmvno.catalog import service as catalog
from openmvno.catalog.models import Plan, PlanKind
from openmvno.channels.api.deps import RT, Session
from openmvno.channels.portal.web import (
    Viewer,
    Visitor,
    attempt,
    checked_form,
    describe,
    error_page,
    login_redirect,
    not_found,
    page,
    redirect,
)
from openmvno.errors import DomainError, InvalidInput, NotFound
from openmvno.formatting import Formatter
from openmvno.i18n import N_, translate
from openmvno.ledger import service as ledger
from openmvno.lines import service as lines
from openmvno.lines.models import LineState
from openmvno.lines.service import LineView
from openmvno.orders import service as orders
from openmvno.orders.models import Order, OrderKind, OrderState
from openmvno.payments import service as payments
from openmvno.payments.models import AttemptState, PaymentAttempt
from openmvno.receipts.service import method_name
from openmvno.runtime import Runtime

router = APIRouter(include_in_schema=False)

MAIN_KINDS = (PlanKind.data, PlanKind.voice, PlanKind.mixed)
OPEN = (AttemptState.created, AttemptState.requires_action)
_AMOUNT = re.compile(r"^(\d{1,9})(?:\.(\d+))?$")

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


# ---------------------------------------------------------------- small helpers


def parse_amount(text: str, rt: Runtime) -> int:
    """Yuan as typed ("50", "50.5", "¥50.50") to integer minor units (fen), exactly;
    more than two decimals or outside the operator's top-up range is refused."""
    cleaned = text.strip().lstrip("¥￥").strip().replace(",", "")
    match = _AMOUNT.match(cleaned)
    if not match:
        raise InvalidInput(
            "amount_not_a_number", "Enter the amount in yuan, for example 50 or 50.5."
        )
    if match.group(2) is not None and len(match.group(2)) > 2:
        raise InvalidInput("amount_too_precise", "Amounts can have at most two decimal places.")
    try:
        minor = int(Decimal(cleaned) * 100)
    except InvalidOperation:  # pragma: no cover - the pattern already checked it
        raise InvalidInput(
            "amount_not_a_number", "Enter the amount in yuan, for example 50 or 50.5."
        ) from None
    low, high = rt.settings.topup_min_minor, rt.settings.topup_max_minor
    if not low <= minor <= high:
        fmt = Formatter(rt.settings.default_language)
        cur = rt.settings.default_currency
        raise InvalidInput(
            "topup_amount_out_of_range", "A top-up must be between {min} and {max}.",
            min=fmt.money(low, cur), max=fmt.money(high, cur),
        )
    return minor


def new_key() -> str:
    """The hidden idempotency key of one rendered confirm form."""
    return secrets.token_urlsafe(18)


def _uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


async def _release(session: AsyncSession) -> None:
    """End the request's transaction before a payment call opens its own."""
    await session.commit()


def _when(iso: Any) -> datetime | None:
    return datetime.fromisoformat(iso) if isinstance(iso, str) and iso else None


async def plan_names(session: AsyncSession, language: str) -> dict[uuid.UUID, str]:
    """Every plan's name in ``language`` (retired ones too), for order lists."""
    found = await catalog.list_plans(session, include_retired=True)
    return {p.id: p.name(language) for p in found}


def order_what(order: Order, names: dict[uuid.UUID, str], language: str) -> str:
    """What an order is for, in the reader's language: "Plan renewal: All-in"."""
    title = translate(language, KIND_TITLES[OrderKind(order.kind)])
    name = names.get(order.plan_id) if order.plan_id else None
    return f"{title}: {name}" if name else title


async def wallet_minor(session: AsyncSession, rt: Runtime, account: Account | None) -> int:
    if account is None:
        return 0
    bucket = await ledger.wallet(
        session, account_id=account.id, currency=rt.settings.default_currency
    )
    return bucket.remaining


def method_choices(
    request: Request, rt: Runtime, *, wallet: bool, wallet_balance: int = 0
) -> list[dict[str, Any]]:
    """The operator's payment methods for a form (the wallet with its balance)."""
    lang = request.state.language
    fmt = Formatter(lang)
    out = []
    for m in payments.enabled_methods(rt):
        if m == payments.WALLET and not wallet:
            continue
        label = method_name(m, lang)
        if m == payments.WALLET:
            balance = fmt.money(wallet_balance, rt.settings.default_currency)
            label = translate(lang, "{method} (balance {balance})", method=label, balance=balance)
        out.append({"value": m, "label": label})
    return out


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


async def account_money(
    session: AsyncSession, rt: Runtime, account: Account, views: list[LineView], language: str
) -> dict[str, Any]:
    """What "My account" shows besides the lines: each line's balance and the wallet."""
    balances: dict[uuid.UUID, ledger.LineBalance] = {}
    for view in views:
        if view.state == LineState.terminated:
            continue
        line = await lines.get_owned(session, account_id=account.id, line_id=view.id)
        balances[view.id] = await ledger.line_balance(
            session, line=line, language=language, currency=rt.settings.default_currency
        )
    minor = await wallet_minor(session, rt, account)
    return {
        "balances": balances,
        "wallet_text": Formatter(language).money(minor, rt.settings.default_currency),
    }


# ---------------------------------------------------------------- paying


def _open_same(attempts: list[PaymentAttempt], method: str) -> PaymentAttempt | None:
    for a in reversed(attempts):
        if a.state in OPEN and str(a.method) == method:
            return a
    return None


async def pay_or_resume(
    request: Request, visitor: Visitor, session: AsyncSession, rt: Runtime, order: Order,
    method: str, *, fresh: bool = False,
) -> Response:
    """Send the payer on: to an already open payment of this order with this method (a
    resubmitted form), else start one; the wallet pays at once. Errors show on the
    order's result page. An order that is not ``fresh`` (just created) is first brought
    up to date with the provider, so a resubmission after paying lands on the result."""
    if not fresh:
        await _release(session)
        order = await payments.refresh_order(rt, order_id=order.id, viewer=visitor.account)
    if order.state != OrderState.pending_payment:
        await _release(session)
        return redirect(request, visitor, f"/orders/{order.id}/result")
    existing = _open_same(await orders.attempts_for(session, order.id), method)
    await _release(session)
    if existing is not None:
        url = existing.next_action.get("url")
        return redirect(request, visitor, url or f"/orders/{order.id}/result")
    try:
        started, order = await payments.pay(
            rt, order_id=order.id, method=method, viewer=visitor.account
        )
    except NotFound:
        return not_found(request, visitor)
    except DomainError as exc:
        return await result_page(
            request, visitor, session, rt, order.id, error=describe(request, exc),
            status_code=exc.status,
        )
    url = started.next_action.get("url") if started.state in OPEN else None
    return redirect(request, visitor, url or f"/orders/{order.id}/result")


async def _create_and_pay(
    request: Request, visitor: Visitor, session: AsyncSession, rt: Runtime, *,
    body: dict[str, Any], key: str, method: str,
) -> Response:
    """Create the order once per key (a DomainError is raised for the form to show),
    then pay it."""
    order, created = await attempt(
        session,
        orders.create(session, rt, account=visitor.account, idempotency_key=key, body=body,
                      language=request.state.language),
    )
    return await pay_or_resume(request, visitor, session, rt, order, method, fresh=created)


# ---------------------------------------------------------------- buy / renew / add-on


async def _checkout(
    request: Request, visitor: Visitor, session: AsyncSession, rt: Runtime, *,
    plan_code: str, line_param: str, key: str | None = None, method: str = "",
    error: str | None = None, status_code: int = 200,
) -> Response:
    assert visitor.account is not None
    lang = request.state.language
    try:
        plan = await catalog.get_sellable_plan(session, plan_code)
    except NotFound:
        return not_found(request, visitor)
    except DomainError as exc:
        return error_page(request, visitor, exc.status, translate(lang, "Plans"),
                          describe(request, exc))
    if plan.kind == PlanKind.topup:
        return redirect(request, visitor, f"/wallet/topup?amount={Decimal(plan.price_minor) / 100}")
    views = await lines.list_for_account(session, visitor.account.id)
    usable = [v for v in views if v.state != LineState.terminated]
    if plan.kind == PlanKind.addon:
        usable = [v for v in usable if v.state == LineState.active]
    ctx: dict[str, Any] = {"plan": plan, "facts": plan_facts(plan, lang),
                           "terms": plan.terms(lang), "plan_kind": plan.kind.value}
    if not line_param:
        return page(request, visitor, "buy_choose.html",
                    {**ctx, "lines": usable, "new_line": plan.kind in MAIN_KINDS})
    line: LineView | None = None
    if line_param == "new":
        if plan.kind not in MAIN_KINDS:
            return not_found(request, visitor)
        kind = OrderKind.new_line
    else:
        line = next((v for v in usable if str(v.id) == line_param), None)
        if line is None:
            return not_found(request, visitor)
        kind = OrderKind.addon if plan.kind == PlanKind.addon else OrderKind.plan
    balance = await wallet_minor(session, rt, visitor.account)
    methods = method_choices(request, rt, wallet=True, wallet_balance=balance)
    return page(
        request, visitor, "checkout.html",
        {**ctx, "line": line, "kind": kind.value, "line_param": line_param,
         "title": translate(lang, KIND_TITLES[kind]), "methods": methods,
         "chosen": method or (methods[0]["value"] if methods else ""),
         "key": key or new_key(), "error": error},
        status_code=status_code,
    )


@router.get("/buy")
async def buy_page(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    q = request.query_params
    if not q.get("plan"):
        return redirect(request, visitor, "/plans")
    return await _checkout(request, visitor, session, rt, plan_code=q["plan"],
                           line_param=q.get("line", ""))


@router.post("/buy")
async def buy_submit(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    form = await checked_form(request, visitor, login=True)
    plan_code, line_param = form.get("plan", ""), form.get("line", "")
    key, method = form.get("key", ""), form.get("method", "")
    body: dict[str, Any] = {"plan_code": plan_code}
    if line_param == "new":
        body["kind"] = OrderKind.new_line.value
    else:
        body["kind"] = form.get("kind", "")
        body["line_id"] = line_param
        if body["kind"] not in (OrderKind.plan.value, OrderKind.addon.value) or not _uuid(
            line_param
        ):
            return not_found(request, visitor)
    try:
        return await _create_and_pay(request, visitor, session, rt, body=body, key=key,
                                     method=method)
    except NotFound:
        return not_found(request, visitor)
    except DomainError as exc:
        return await _checkout(
            request, visitor, session, rt, plan_code=plan_code, line_param=line_param, key=key,
            method=method, error=describe(request, exc), status_code=exc.status,
        )


# ---------------------------------------------------------------- wallet top-up


def _topup_form(
    request: Request, visitor: Visitor, rt: Runtime, *, amount: str = "", key: str | None = None,
    method: str = "", error: str | None = None, status_code: int = 200,
) -> Response:
    methods = method_choices(request, rt, wallet=False)
    return page(
        request, visitor, "wallet_topup.html",
        {"amount": amount, "key": key or new_key(), "methods": methods,
         "chosen": method or (methods[0]["value"] if methods else ""),
         "range": _range(request, rt), "error": error},
        status_code=status_code,
    )


def _range(request: Request, rt: Runtime) -> str:
    fmt = Formatter(request.state.language)
    cur = rt.settings.default_currency
    return translate(
        request.state.language, "From {min} to {max}.",
        min=fmt.money(rt.settings.topup_min_minor, cur),
        max=fmt.money(rt.settings.topup_max_minor, cur),
    )


@router.get("/wallet/topup")
async def wallet_topup_page(request: Request, visitor: Viewer, rt: RT) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    return _topup_form(request, visitor, rt, amount=request.query_params.get("amount", ""))


@router.post("/wallet/topup")
async def wallet_topup_submit(
    request: Request, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    form = await checked_form(request, visitor, login=True)
    amount, key, method = form.get("amount", ""), form.get("key", ""), form.get("method", "")
    try:
        minor = parse_amount(amount, rt)
        body = {"kind": OrderKind.topup.value, "amount_minor": minor}
        return await _create_and_pay(request, visitor, session, rt, body=body, key=key,
                                     method=method)
    except DomainError as exc:
        return _topup_form(request, visitor, rt, amount=amount, key=key, method=method,
                           error=describe(request, exc), status_code=exc.status)


# ---------------------------------------------------------------- guest top-up


@router.get("/topup")
async def guest_topup_page(request: Request, visitor: Viewer) -> Response:
    return page(request, visitor, "topup_number.html",
                {"msisdn": request.query_params.get("msisdn", "")})


def _guest_confirm(
    request: Request, visitor: Visitor, rt: Runtime, *, msisdn: str, found: dict[str, str],
    amount: str = "", key: str | None = None, method: str = "", error: str | None = None,
    status_code: int = 200,
) -> Response:
    methods = method_choices(request, rt, wallet=False)
    return page(
        request, visitor, "topup_guest.html",
        {"msisdn": msisdn, "found": found, "amount": amount, "key": key or new_key(),
         "methods": methods, "chosen": method or (methods[0]["value"] if methods else ""),
         "range": _range(request, rt), "error": error},
        status_code=status_code,
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/topup")
async def guest_topup_lookup(
    request: Request, visitor: Viewer, session: Session, rt: RT
) -> Response:
    form = await checked_form(request, visitor, login=False)
    msisdn = form.get("msisdn", "")
    try:
        found = await orders.guest_lookup(session, rt, msisdn, client=_client(request))
    except DomainError as exc:
        return page(request, visitor, "topup_number.html",
                    {"msisdn": msisdn, "error": describe(request, exc)}, status_code=exc.status)
    return _guest_confirm(request, visitor, rt, msisdn=msisdn, found=found)


@router.post("/topup/pay")
async def guest_topup_pay(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    form = await checked_form(request, visitor, login=False)
    msisdn, amount = form.get("msisdn", ""), form.get("amount", "")
    key, method = form.get("key", ""), form.get("method", "")
    try:
        found = await orders.guest_lookup(session, rt, msisdn, client=_client(request))
    except DomainError as exc:
        return page(request, visitor, "topup_number.html",
                    {"msisdn": msisdn, "error": describe(request, exc)}, status_code=exc.status)
    try:
        minor = parse_amount(amount, rt)
        body = {"kind": OrderKind.guest_topup.value, "msisdn": msisdn, "amount_minor": minor}
        return await _create_and_pay(request, visitor, session, rt, body=body, key=key,
                                     method=method)
    except DomainError as exc:
        return _guest_confirm(request, visitor, rt, msisdn=msisdn, found=found, amount=amount,
                              key=key, method=method, error=describe(request, exc),
                              status_code=exc.status)


# ---------------------------------------------------------------- result


async def result_page(
    request: Request, visitor: Visitor, session: AsyncSession, rt: Runtime,
    order_id: uuid.UUID, *, error: str | None = None, status_code: int = 200,
) -> Response:
    """The outcome of an order after asking the provider (never "wait and refresh")."""
    await _release(session)
    try:
        order = await payments.refresh_order(rt, order_id=order_id, viewer=visitor.account)
    except NotFound:
        return not_found(request, visitor)
    ctx = await order_context(request, visitor, session, rt, order)
    return page(request, visitor, "order_result.html", {**ctx, "error": error},
                status_code=status_code)


async def order_context(
    request: Request, visitor: Visitor, session: AsyncSession, rt: Runtime, order: Order
) -> dict[str, Any]:
    """Everything the result and detail pages show about one order, localised."""
    lang = request.state.language
    fmt = Formatter(lang)
    state = OrderState(order.state)
    kind = OrderKind(order.kind)
    mine = visitor.account is not None and order.account_id == visitor.account.id
    r = order.result or {}
    attempts = await orders.attempts_for(session, order.id)
    ctx: dict[str, Any] = {
        "order": order,
        "state": state.value,
        "state_text": translate(lang, STATE_TITLES[state]),
        "kind_text": order_what(order, await plan_names(session, lang), lang),
        "amount": fmt.money(order.amount_minor, order.currency),
        "created": fmt.date(order.created_at),
        "mine": mine,
        "failure": None,
        "balance": None,
        "expires": fmt.date(_when(r.get("expires_at"))) if r.get("expires_at") else None,
        "previous_expires": fmt.date(_when(r.get("previous_expires_at")))
        if r.get("previous_expires_at") else None,
        "activation_code": r.get("activation_code") if mine else None,
        "receipt_id": r.get("receipt_id") if mine else None,
        "receipt_number": r.get("receipt_number"),
        "credited": fmt.money(int(r["credited_minor"]), order.currency)
        if "credited_minor" in r else None,
        "wallet_text": None,
        "open_url": None,
        "processing": False,
        "methods": [],
        "plan_name": None,
    }
    if state in (OrderState.pending_payment, OrderState.failed):
        ctx["failure"] = orders.failure_reason(lang, order.failure_code)
    if state == OrderState.pending_payment:
        open_attempts = [a for a in attempts if a.state in OPEN]
        if open_attempts and open_attempts[-1].next_action.get("url"):
            ctx["open_url"] = open_attempts[-1].next_action["url"]
        wallet_ok = mine and kind not in (OrderKind.topup, OrderKind.guest_topup)
        balance = await wallet_minor(session, rt, visitor.account) if wallet_ok else 0
        ctx["methods"] = method_choices(request, rt, wallet=wallet_ok, wallet_balance=balance)
    if state == OrderState.fulfilled:
        if order.plan_id:
            ctx["plan_name"] = (await plan_names(session, lang)).get(order.plan_id)
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
    return ctx


@router.get("/orders/{order_id}/result")
async def order_result(
    request: Request, order_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    oid = _uuid(order_id)
    if oid is None:
        return not_found(request, visitor)
    return await result_page(request, visitor, session, rt, oid)


@router.post("/orders/{order_id}/pay")
async def order_pay(
    request: Request, order_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    """Pay an order again (another method after a decline); guests may, for their order."""
    form = await checked_form(request, visitor, login=False)
    oid = _uuid(order_id)
    if oid is None:
        return not_found(request, visitor)
    try:
        order = await orders.get_visible(session, oid, visitor.account)
    except NotFound:
        return not_found(request, visitor)
    return await pay_or_resume(request, visitor, session, rt, order, form.get("method", ""))
