"""Agent console: find the caller, verify them, see everything on one screen, act for a
verified caller (payment link, wallet, bank transfer, cancel, move a top-up, refund, notes).

Every route that changes an account calls :func:`_verified` first: nothing changes for
an unverified caller."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

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
    act,
    describe,
    done,
    error_page,
    parse_uuid,
    redirect,
    render,
    staff_of,
)
from openmvno.db import unit_of_work
from openmvno.errors import DomainError, InvalidInput, NotFound
from openmvno.i18n import translate
from openmvno.ledger import service as ledger
from openmvno.lines import service as lines
from openmvno.notifications.models import OutboxKind, OutboxMessage
from openmvno.orders import service as orders
from openmvno.orders.models import Order, OrderState
from openmvno.receipts import service as receipts
from openmvno.renewals import scheduler
from openmvno.renewals import service as renewals
from openmvno.runtime import Runtime
from openmvno.staff import actions, notes, runtime_settings, search, verification
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


def _back(account: Account) -> str:
    return f"{PATH}/accounts/{account.id}"


@dataclass(frozen=True)
class Target:
    """What an agent's action is about: the caller's account, and one of their orders."""

    account: Account
    order: Order | None = None

    @property
    def url(self) -> str:
        """Where the action's answer goes back to: the order's page, or the caller's."""
        return _order_url(self.account, self.order) if self.order else _back(self.account)

    @property
    def the_order(self) -> Order:
        assert self.order is not None
        return self.order


R = TypeVar("R")


async def _for_caller(
    request: Request,
    desk: Desk,
    session: Session,
    account_id: str,
    work: Callable[[dict[str, str], Target], Awaitable[R]],
    then: str | Callable[[Target, R], Response | Awaitable[Response]],
    *,
    verified: bool = True,
    order_id: str | None = None,
) -> Response:
    """An agent's action for a caller (:func:`web.act`): the form, the account named in
    the address (else 404), the caller verified now unless ``verified=False`` (else the
    "verify the caller first" page), the order named (else 404), ``work`` in a savepoint
    (refused: the "action was refused" page), then ``then`` — a done code (back to the
    order's or the caller's page) or a function answering the response."""

    async def load(form: dict[str, str]) -> Target | Response:
        account = await _account(session, account_id)
        if account is None:
            return _not_found(request, desk)
        if verified:
            try:
                await verification.require(
                    session, staff_id=staff_of(desk).account.id, account_id=account.id
                )
            except DomainError as exc:
                return error_page(
                    request, desk, exc.status, "Verify the caller first", describe(request, exc)
                )
        if order_id is None:
            return Target(account)
        oid = parse_uuid(order_id)
        try:
            order = await actions.order_of(session, account, oid) if oid else None
        except NotFound:
            order = None
        if order is None:
            return _not_found(request, desk)
        return Target(account, order)

    def answer(target: Target, _result: R) -> Response:
        assert isinstance(then, str)
        return done(target.url, then)

    return await act(request, desk, session, load, work,
                     answer if isinstance(then, str) else then)


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
    paused: dict[uuid.UUID, str] = {}
    await runtime_settings.refresh(session, rt)  # payment methods switched off on the console
    for lv in line_views:
        auto[lv.id] = view = await renewals.auto_renew_view(
            session, account_id=account.id, line_id=lv.id
        )
        off = scheduler.switched_off(
            rt, funding=view.funding.value, wallet_fallback=view.wallet_fallback
        )
        if view.enabled and off:
            paused[lv.id] = translate(
                language, "switched off for now: {methods}",
                methods=", ".join(receipts.method_name(m, language) for m in off),
            )
        used = await history.line_history(
            session, rt.settings, account_id=account.id, line_id=lv.id
        )
        usage[lv.id] = used.totals
    order_list, _ = await orders.list_for_account(session, account.id, limit=20)
    credited = (
        await session.scalars(
            select(Order)
            .where(Order.credited_account_id == account.id, Order.account_id.is_(None))
            .order_by(Order.created_at.desc(), Order.id.desc())
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
        "paused": paused,
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
    async def work(form: dict[str, str], target: Target) -> tuple[str, str]:
        field = form.get("field", "")
        value = await search.reveal(
            session,
            staff=staff_of(desk).account,
            account=target.account,
            field=field,
            reason=form.get("reason", ""),
        )
        return field, value

    async def then(target: Target, revealed: tuple[str, str]) -> Response:
        ctx = await _screen(session, rt, desk, target.account, request.state.language)
        ctx["revealed"] = {"field": revealed[0], "value": revealed[1]}
        return render(request, desk, "caller.html", ctx)

    return await _for_caller(request, desk, session, account_id, work, then, verified=False)


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
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
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
    async def work(form: dict[str, str], target: Target) -> None:
        channel = Channel.email if form.get("channel") == "email" else Channel.sms
        await verification.send_code(
            session, rt, staff=staff_of(desk).account, account=target.account, channel=channel
        )

    return await _for_caller(request, desk, session, account_id, work, "code_sent",
                             verified=False)


@router.post(PATH + "/accounts/{account_id}/verify/code")
async def verify_code(
    request: Request, account_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    async def work(form: dict[str, str], target: Target) -> None:
        await verification.check_code(
            session, rt, staff=staff_of(desk).account, account=target.account,
            code=form.get("code", ""),
        )

    return await _for_caller(request, desk, session, account_id, work, "verified",
                             verified=False)


@router.post(PATH + "/accounts/{account_id}/verify/device")
async def verify_device(
    request: Request, account_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    async def work(form: dict[str, str], target: Target) -> None:
        await verification.check_device(
            session, rt, staff=staff_of(desk).account, account=target.account,
            serial=form.get("serial", ""), name=form.get("name", ""),
        )

    return await _for_caller(request, desk, session, account_id, work, "verified",
                             verified=False)


# ---------------------------------------------------------------- actions (verified callers)


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
    async def work(form: dict[str, str], target: Target) -> actions.PaymentLink:
        kind = form.get("kind", "plan")
        amount = _amount(form.get("amount", "")) if kind == "topup" else None
        return await actions.send_payment_link(
            session,
            rt,
            staff=staff_of(desk).account,
            account=target.account,
            kind=kind,
            line_id=parse_uuid(form.get("line_id", "")),
            plan_code=form.get("plan") or None,
            amount_minor=amount,
            channel=Channel.email if form.get("channel") == "email" else Channel.sms,
            key=form.get("key") or uuid.uuid4().hex,
        )

    def then(target: Target, link: actions.PaymentLink) -> Response:
        return done(_order_url(target.account, link.order), "link_sent")

    return await _for_caller(request, desk, session, account_id, work, then)


@router.post(PATH + "/accounts/{account_id}/orders")
async def new_order(
    request: Request, account_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    """A renewal order the agent then pays from the wallet or by a bank transfer."""

    async def work(form: dict[str, str], target: Target) -> Order:
        return await actions.create_order(
            session,
            rt,
            staff=staff_of(desk).account,
            account=target.account,
            kind="plan",
            line_id=parse_uuid(form.get("line_id", "")),
            plan_code=form.get("plan") or None,
            amount_minor=None,
            key=form.get("key") or uuid.uuid4().hex,
        )

    def then(target: Target, order: Order) -> Response:
        return redirect(_order_url(target.account, order))

    return await _for_caller(request, desk, session, account_id, work, then)


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


def _order_url(account: Account, order: Order) -> str:
    return f"{PATH}/accounts/{account.id}/orders/{order.id}"


@router.post(PATH + "/accounts/{account_id}/orders/{order_id}/wallet")
async def pay_wallet(
    request: Request, account_id: str, order_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    async def work(form: dict[str, str], target: Target) -> None:
        await actions.pay_from_wallet(
            session, rt, staff=staff_of(desk).account, account=target.account,
            order=target.the_order,
        )

    return await _for_caller(request, desk, session, account_id, work, "paid",
                             order_id=order_id)


@router.post(PATH + "/accounts/{account_id}/orders/{order_id}/bank-transfer")
async def bank_transfer(
    request: Request, account_id: str, order_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    async def work(form: dict[str, str], target: Target) -> None:
        await actions.record_bank_transfer(
            session, rt, staff=staff_of(desk).account, account=target.account,
            order=target.the_order, reference=form.get("reference", ""),
            reason=form.get("reason", ""),
        )

    return await _for_caller(request, desk, session, account_id, work, "paid",
                             order_id=order_id)


@router.post(PATH + "/accounts/{account_id}/orders/{order_id}/cancel")
async def cancel(
    request: Request, account_id: str, order_id: str, desk: StaffDesk, session: Session
) -> Response:
    async def work(form: dict[str, str], target: Target) -> None:
        await actions.cancel_order(
            session, staff=staff_of(desk).account, account=target.account,
            order=target.the_order, reason=form.get("reason", ""),
        )

    return await _for_caller(request, desk, session, account_id, work, "cancelled",
                             order_id=order_id)


@router.post(PATH + "/accounts/{account_id}/orders/{order_id}/move")
async def move(
    request: Request, account_id: str, order_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    async def work(form: dict[str, str], target: Target) -> None:
        await actions.move_topup(
            session, rt, staff=staff_of(desk).account, order=target.the_order,
            to_msisdn=form.get("msisdn", ""), reason=form.get("reason", ""),
        )

    return await _for_caller(request, desk, session, account_id, work, "moved",
                             order_id=order_id)


@router.post(PATH + "/accounts/{account_id}/orders/{order_id}/refund")
async def refund(
    request: Request, account_id: str, order_id: str, desk: StaffDesk, session: Session, rt: RT
) -> Response:
    async def work(form: dict[str, str], target: Target) -> str:
        return await actions.refund_or_request(
            session, rt, staff=staff_of(desk).account, account=target.account,
            order=target.the_order, reason=form.get("reason", ""),
        )

    def then(target: Target, outcome: str) -> Response:
        return done(target.url, "refunded" if outcome == "refunded" else "refund_requested")

    return await _for_caller(request, desk, session, account_id, work, then, order_id=order_id)


@router.post(PATH + "/accounts/{account_id}/notes")
async def add_note(
    request: Request, account_id: str, desk: StaffDesk, session: Session
) -> Response:
    async def work(form: dict[str, str], target: Target) -> None:
        await notes.add(
            session, author=staff_of(desk).account, account_id=target.account.id,
            body=form.get("note", ""),
        )

    return await _for_caller(request, desk, session, account_id, work, "noted")
