"""Agent console: find the caller, verify them, see everything on one screen, act for a
verified caller (payment link, wallet, bank transfer, cancel, move a top-up, refund, notes).

Every route that changes an account calls :func:`_verified` first: nothing changes for
an unverified caller."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from openmvno.accounts.models import Account, Channel
from openmvno.audit import service as audit
from openmvno.catalog import service as catalog
from openmvno.channels.console.web import (
    PATH,
    Desk,
    StaffDesk,
    describe,
    done,
    error_page,
    parse_uuid,
    read_form,
    redirect,
    render,
    staff_of,
)
from openmvno.db import unit_of_work
from openmvno.errors import DomainError, InvalidInput, NotFound
from openmvno.ledger import service as ledger
from openmvno.lines import service as lines
from openmvno.notifications.models import OutboxKind, OutboxMessage
from openmvno.orders import service as orders
from openmvno.orders.models import Order, OrderState
from openmvno.receipts import service as receipts
from openmvno.renewals import service as renewals
from openmvno.runtime import Runtime
from openmvno.staff import actions, notes, search, verification
from openmvno.usage import history
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)


def _not_found(request: Request, desk: Desk) -> Response:
    return error_page(
        request,
        desk,
        404,
        "Not found",
        describe(request, NotFound("account_not_found", "There is no such account.")),
    )


async def _account(session: Session, raw: str) -> Account | None:
    account_id = parse_uuid(raw)
    if account_id is None:
        return None
    try:
        return await search.subscriber(session, account_id)
    except NotFound:
        return None


async def _savepoint(session: Session, work: Any) -> Any:
    nested = await session.begin_nested()
    try:
        result = await work
    except DomainError as exc:
        await (nested.commit() if exc.keep_changes else nested.rollback())
        raise
    except BaseException:
        await nested.rollback()
        raise
    await nested.commit()
    return result


def _back(account: Account) -> str:
    return f"{PATH}/accounts/{account.id}"


# ---------------------------------------------------------------- search


@router.get(PATH)
async def home(request: Request, desk: StaffDesk, session: Session, rt: RT) -> Response:
    q = request.query_params.get("q", "")
    results: list[search.Found] | None = None
    error = None
    if q:
        try:
            results = await search.search(session, rt, q)
        except DomainError as exc:
            error = describe(request, exc)
    return render(request, desk, "home.html", {"q": q, "results": results, "error": error})


# ---------------------------------------------------------------- the caller's screen


async def _screen(
    session: Session, rt: Runtime, desk: Desk, account: Account, language: str
) -> dict[str, Any]:
    staff = staff_of(desk)
    line_views = await lines.list_for_account(session, account.id)
    balances = await ledger.line_balances(
        session, account_id=account.id, line_ids=[lv.id for lv in line_views], language=language
    )
    auto = {}
    usage = {}
    for lv in line_views:
        auto[lv.id] = await renewals.auto_renew_view(session, account_id=account.id, line_id=lv.id)
        used = await history.line_history(
            session, rt.settings, account_id=account.id, line_id=lv.id
        )
        usage[lv.id] = used.totals
    order_list, _ = await orders.list_for_account(session, account.id, limit=20)
    credited = (
        await session.scalars(
            select(Order)
            .where(Order.credited_account_id == account.id, Order.account_id.is_(None))
            .order_by(Order.created_at.desc())
            .limit(20)
        )
    ).all()
    receipt_list, _ = await receipts.list_for_account(session, account.id, limit=20)
    until = await verification.verified_until(
        session, staff_id=staff.account.id, account_id=account.id
    )
    wallet = await ledger.wallet_balance(
        session, account_id=account.id, currency=rt.settings.default_currency
    )
    return {
        "subject": search.masked(account),
        "subject_id": account.id,
        "has_phone": bool(account.phone),
        "has_email": bool(account.email),
        "lines": line_views,
        "balances": balances,
        "auto": auto,
        "usage": usage,
        "orders": order_list,
        "credited": list(credited),
        "receipts": receipt_list,
        "verified_until": until,
        "wallet_minor": wallet,
        "currency": rt.settings.default_currency,
        "plans": await catalog.list_plans(session),
        "notes": await notes.list_for(session, account.id),
        "may_bank": actions.may_record_bank_transfer(rt, staff.account),
        "pending": OrderState.pending_payment,
        "fulfilled": OrderState.fulfilled,
    }


@router.get(PATH + "/accounts/{account_id}")
async def caller(
    request: Request, account_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    account = await _account(session, account_id)
    if account is None:
        return _not_found(request, desk)
    ctx = await _screen(session, rt, desk, account, request.state.language)
    return render(request, desk, "caller.html", ctx)


@router.post(PATH + "/accounts/{account_id}/reveal")
async def reveal(
    request: Request, account_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    form = await read_form(request, desk)
    account = await _account(session, account_id)
    if account is None:
        return _not_found(request, desk)
    field = form.get("field", "")
    try:
        value = await _savepoint(
            session,
            search.reveal(
                session,
                staff=staff_of(desk).account,
                account=account,
                field=field,
                reason=form.get("reason", ""),
            ),
        )
    except DomainError as exc:
        return error_page(
            request, desk, exc.status, "The action was refused", describe(request, exc)
        )
    ctx = await _screen(session, rt, desk, account, request.state.language)
    ctx["revealed"] = {"field": field, "value": value}
    return render(request, desk, "caller.html", ctx)


@router.get(PATH + "/accounts/{account_id}/messages")
async def messages(
    request: Request, account_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    """The SMS and emails sent to the subscriber (an audited read; codes never shown)."""
    account = await _account(session, account_id)
    if account is None:
        return _not_found(request, desk)
    rows = (
        await session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.account_id == account.id,
                OutboxMessage.kind.in_([OutboxKind.sms, OutboxKind.email]),
            )
            .order_by(OutboxMessage.created_at.desc())
            .limit(50)
        )
    ).all()
    async with unit_of_work(rt.sessions) as w:  # this GET is read-only: the audit in its own
        await audit.record(
            w,
            actor=staff_of(desk).account.id,
            action="account.messages_read",
            subject_type="account",
            subject_id=account.id,
            account_id=account.id,
            data={"count": len(rows)},
        )
    shown = [
        {
            "at": m.created_at,
            "kind": m.kind.value,
            "to": m.recipient,
            "state": m.state.value,
            "subject": m.subject,
            "body": None if (m.payload or {}).get("sensitive") else m.body,
        }
        for m in rows
    ]
    return render(
        request,
        desk,
        "messages.html",
        {"subject": search.masked(account), "subject_id": account.id, "messages": shown},
    )


# ---------------------------------------------------------------- verification


@router.post(PATH + "/accounts/{account_id}/verify/send")
async def verify_send(
    request: Request, account_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    form = await read_form(request, desk)
    account = await _account(session, account_id)
    if account is None:
        return _not_found(request, desk)
    channel = Channel.email if form.get("channel") == "email" else Channel.sms
    try:
        await _savepoint(
            session,
            verification.send_code(
                session, rt, staff=staff_of(desk).account, account=account, channel=channel
            ),
        )
    except DomainError as exc:
        return error_page(
            request, desk, exc.status, "The action was refused", describe(request, exc)
        )
    return done(_back(account), "code_sent")


@router.post(PATH + "/accounts/{account_id}/verify/code")
async def verify_code(
    request: Request, account_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    form = await read_form(request, desk)
    account = await _account(session, account_id)
    if account is None:
        return _not_found(request, desk)
    try:
        await _savepoint(
            session,
            verification.check_code(
                session,
                rt,
                staff=staff_of(desk).account,
                account=account,
                code=form.get("code", ""),
            ),
        )
    except DomainError as exc:
        return error_page(
            request, desk, exc.status, "The action was refused", describe(request, exc)
        )
    return done(_back(account), "verified")


@router.post(PATH + "/accounts/{account_id}/verify/device")
async def verify_device(
    request: Request, account_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    form = await read_form(request, desk)
    account = await _account(session, account_id)
    if account is None:
        return _not_found(request, desk)
    try:
        await _savepoint(
            session,
            verification.check_device(
                session,
                rt,
                staff=staff_of(desk).account,
                account=account,
                serial=form.get("serial", ""),
                name=form.get("name", ""),
            ),
        )
    except DomainError as exc:
        return error_page(
            request, desk, exc.status, "The action was refused", describe(request, exc)
        )
    return done(_back(account), "verified")


# ---------------------------------------------------------------- actions (verified callers)


async def _verified(
    request: Request, account_id: str, desk: Desk, session: Session
) -> tuple[Account | None, Response | None, dict[str, str]]:
    """The form, the account, and a refusal page unless the caller is verified now."""
    form = await read_form(request, desk)
    account = await _account(session, account_id)
    if account is None:
        return None, _not_found(request, desk), form
    try:
        await verification.require(
            session, staff_id=staff_of(desk).account.id, account_id=account.id
        )
    except DomainError as exc:
        return (
            account,
            error_page(
                request, desk, exc.status, "Verify the caller first", describe(request, exc)
            ),
            form,
        )
    return account, None, form


def _amount(text: str) -> int:
    cleaned = text.replace(",", ".").replace("¥", "").strip()
    try:
        value = round(float(cleaned) * 100)
    except ValueError as exc:
        raise InvalidInput(
            "amount_invalid", "Type an amount in yuan, such as 50 or 49.90."
        ) from exc
    if value <= 0:
        raise InvalidInput("amount_invalid", "Type an amount in yuan, such as 50 or 49.90.")
    return value


@router.post(PATH + "/accounts/{account_id}/payment-link")
async def payment_link(
    request: Request, account_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    account, refused, form = await _verified(request, account_id, desk, session)
    if refused is not None or account is None:
        return refused or _not_found(request, desk)
    kind = form.get("kind", "plan")
    try:
        amount = _amount(form.get("amount", "")) if kind == "topup" else None
        link = await _savepoint(
            session,
            actions.send_payment_link(
                session,
                rt,
                staff=staff_of(desk).account,
                account=account,
                kind=kind,
                line_id=parse_uuid(form.get("line_id", "")),
                plan_code=form.get("plan") or None,
                amount_minor=amount,
                channel=Channel.email if form.get("channel") == "email" else Channel.sms,
                key=form.get("key") or uuid.uuid4().hex,
            ),
        )
    except DomainError as exc:
        return error_page(
            request, desk, exc.status, "The action was refused", describe(request, exc)
        )
    return redirect(f"{PATH}/accounts/{account.id}/orders/{link.order.id}?done=link_sent")


@router.post(PATH + "/accounts/{account_id}/orders")
async def new_order(
    request: Request, account_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    """A renewal order the agent then pays from the wallet or by a bank transfer."""
    account, refused, form = await _verified(request, account_id, desk, session)
    if refused is not None or account is None:
        return refused or _not_found(request, desk)
    try:
        order = await _savepoint(
            session,
            actions.create_order(
                session,
                rt,
                staff=staff_of(desk).account,
                account=account,
                kind="plan",
                line_id=parse_uuid(form.get("line_id", "")),
                plan_code=form.get("plan") or None,
                amount_minor=None,
                key=form.get("key") or uuid.uuid4().hex,
            ),
        )
    except DomainError as exc:
        return error_page(
            request, desk, exc.status, "The action was refused", describe(request, exc)
        )
    return redirect(f"{PATH}/accounts/{account.id}/orders/{order.id}")


@router.get(PATH + "/accounts/{account_id}/orders/{order_id}")
async def order_page(
    request: Request, account_id: str, order_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    """One of the caller's orders; while it waits for payment the page reloads itself
    every 10 seconds (a meta refresh: no script), so the agent sees it paid."""
    account = await _account(session, account_id)
    oid = parse_uuid(order_id)
    if account is None or oid is None:
        return _not_found(request, desk)
    try:
        order = await actions.order_of(session, account, oid)
    except NotFound:
        return _not_found(request, desk)
    staff = staff_of(desk)
    return render(
        request,
        desk,
        "order.html",
        {
            "subject": search.masked(account),
            "subject_id": account.id,
            "order": order,
            "pending": order.state == OrderState.pending_payment,
            "fulfilled": order.state == OrderState.fulfilled,
            "is_topup": order.kind.value in ("topup", "guest_topup"),
            "may_bank": actions.may_record_bank_transfer(rt, staff.account),
            "needs_approval": actions.needs_approval(rt, staff.account, order),
            "verified_until": await verification.verified_until(
                session, staff_id=staff.account.id, account_id=account.id
            ),
        },
    )


async def _order_action(
    request: Request, account_id: str, order_id: str, desk: Desk, session: Session
) -> tuple[Account | None, Order | None, Response | None, dict[str, str]]:
    account, refused, form = await _verified(request, account_id, desk, session)
    if refused is not None or account is None:
        return account, None, refused or _not_found(request, desk), form
    oid = parse_uuid(order_id)
    try:
        order = await actions.order_of(session, account, oid) if oid else None
    except NotFound:
        order = None
    if order is None:
        return account, None, _not_found(request, desk), form
    return account, order, None, form


def _order_url(account: Account, order: Order) -> str:
    return f"{PATH}/accounts/{account.id}/orders/{order.id}"


@router.post(PATH + "/accounts/{account_id}/orders/{order_id}/wallet")
async def pay_wallet(
    request: Request, account_id: str, order_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    account, order, refused, _form = await _order_action(
        request, account_id, order_id, desk, session
    )
    if refused is not None or account is None or order is None:
        return refused or _not_found(request, desk)
    try:
        await _savepoint(
            session,
            actions.pay_from_wallet(
                session, rt, staff=staff_of(desk).account, account=account, order=order
            ),
        )
    except DomainError as exc:
        return error_page(
            request, desk, exc.status, "The action was refused", describe(request, exc)
        )
    return done(_order_url(account, order), "paid")


@router.post(PATH + "/accounts/{account_id}/orders/{order_id}/bank-transfer")
async def bank_transfer(
    request: Request, account_id: str, order_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    account, order, refused, form = await _order_action(
        request, account_id, order_id, desk, session
    )
    if refused is not None or account is None or order is None:
        return refused or _not_found(request, desk)
    try:
        await _savepoint(
            session,
            actions.record_bank_transfer(
                session,
                rt,
                staff=staff_of(desk).account,
                account=account,
                order=order,
                reference=form.get("reference", ""),
                reason=form.get("reason", ""),
            ),
        )
    except DomainError as exc:
        return error_page(
            request, desk, exc.status, "The action was refused", describe(request, exc)
        )
    return done(_order_url(account, order), "paid")


@router.post(PATH + "/accounts/{account_id}/orders/{order_id}/cancel")
async def cancel(
    request: Request, account_id: str, order_id: str, desk: StaffDesk, session: Session
) -> Response:
    account, order, refused, form = await _order_action(
        request, account_id, order_id, desk, session
    )
    if refused is not None or account is None or order is None:
        return refused or _not_found(request, desk)
    try:
        await _savepoint(
            session,
            actions.cancel_order(
                session,
                staff=staff_of(desk).account,
                account=account,
                order=order,
                reason=form.get("reason", ""),
            ),
        )
    except DomainError as exc:
        return error_page(
            request, desk, exc.status, "The action was refused", describe(request, exc)
        )
    return done(_order_url(account, order), "cancelled")


@router.post(PATH + "/accounts/{account_id}/orders/{order_id}/move")
async def move(
    request: Request, account_id: str, order_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    account, order, refused, form = await _order_action(
        request, account_id, order_id, desk, session
    )
    if refused is not None or account is None or order is None:
        return refused or _not_found(request, desk)
    try:
        await _savepoint(
            session,
            actions.move_topup(
                session,
                rt,
                staff=staff_of(desk).account,
                order=order,
                to_msisdn=form.get("msisdn", ""),
                reason=form.get("reason", ""),
            ),
        )
    except DomainError as exc:
        return error_page(
            request, desk, exc.status, "The action was refused", describe(request, exc)
        )
    return done(_order_url(account, order), "moved")


@router.post(PATH + "/accounts/{account_id}/orders/{order_id}/refund")
async def refund(
    request: Request, account_id: str, order_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    account, order, refused, form = await _order_action(
        request, account_id, order_id, desk, session
    )
    if refused is not None or account is None or order is None:
        return refused or _not_found(request, desk)
    try:
        outcome = await _savepoint(
            session,
            actions.refund_or_request(
                session,
                rt,
                staff=staff_of(desk).account,
                account=account,
                order=order,
                reason=form.get("reason", ""),
            ),
        )
    except DomainError as exc:
        return error_page(
            request, desk, exc.status, "The action was refused", describe(request, exc)
        )
    return done(
        _order_url(account, order), "refunded" if outcome == "refunded" else "refund_requested"
    )


@router.post(PATH + "/accounts/{account_id}/notes")
async def add_note(
    request: Request, account_id: str, desk: StaffDesk, session: Session
) -> Response:
    account, refused, form = await _verified(request, account_id, desk, session)
    if refused is not None or account is None:
        return refused or _not_found(request, desk)
    try:
        await _savepoint(
            session,
            notes.add(
                session,
                author=staff_of(desk).account,
                account_id=account.id,
                body=form.get("note", ""),
            ),
        )
    except DomainError as exc:
        return error_page(
            request, desk, exc.status, "The action was refused", describe(request, exc)
        )
    return done(_back(account), "noted")
