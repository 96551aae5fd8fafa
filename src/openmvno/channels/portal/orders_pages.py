"""Portal pages: my orders (renewal history), one order with its cancel button, and my
receipts (HTML view and PDF download, owner only)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.identity import mask_phone
from openmvno.accounts.models import Account
from openmvno.channels.portal.order_views import (
    STATE_TITLES,
    order_context,
    order_what,
    plan_names,
)
from openmvno.channels.portal.web import (
    FLASHES,
    PRIVATE,
    Viewer,
    attempt,
    checked_form,
    describe,
    login_redirect,
    not_found,
    page,
    page_number,
    parse_uuid,
    redirect,
)
from openmvno.errors import DomainError, NotFound
from openmvno.formatting import Formatter
from openmvno.i18n import N_, translate
from openmvno.orders import service as orders
from openmvno.orders.models import Order, OrderKind, OrderState
from openmvno.receipts import pdf
from openmvno.receipts import service as receipts
from openmvno.receipts.models import Receipt
from openmvno.receipts.service import method_name
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 20
FLASHES["order_cancelled"] = N_("The order was cancelled.")


async def _my_order(session: AsyncSession, order_id: str, account: Account) -> Order:
    """One of the account's own orders, else "not found"."""
    oid = parse_uuid(order_id)
    order = await orders.get_visible(session, oid, account) if oid else None
    if order is None or order.account_id != account.id:
        raise NotFound("order_not_found", "There is no such order.")
    return order


async def _my_receipt(session: AsyncSession, receipt_id: str, account: Account) -> Receipt:
    """One of the account's own receipts, else "not found"."""
    rid = parse_uuid(receipt_id)
    receipt = await receipts.get_visible(session, rid, account) if rid else None
    if receipt is None or receipt.account_id != account.id:
        raise NotFound("receipt_not_found", "There is no such receipt.")
    return receipt


@router.get("/orders")
async def my_orders(request: Request, visitor: Viewer, session: Session) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    lang = request.state.language
    fmt = Formatter(lang)
    number = page_number(request)
    entries, total = await orders.history_for_account(
        session, visitor.account.id, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
    )
    names = await plan_names(session, lang)
    await receipts.fill_numbers(session, [e.order for e in entries])
    rows = [_history_row(e, names, lang, fmt) for e in entries]
    return page(request, visitor, "orders.html", _paged(rows, total, number))


def _history_row(
    entry: orders.HistoryEntry, names: dict[uuid.UUID, str], lang: str, fmt: Formatter
) -> dict[str, Any]:
    """One line of the history: the order, its state and (a fulfilled order of my own)
    its receipt; a top-up someone else paid for my number says who, masked."""
    o = entry.order
    state = OrderState(o.state)
    result = o.result or {}
    own_receipt = not entry.from_someone_else and state in (
        OrderState.fulfilled, OrderState.refunded
    )
    return {
        "id": o.id,
        "number": o.number,
        "date": fmt.date(o.created_at),
        "what": order_what(o, names, lang),
        "msisdn": (o.msisdn or "") if entry.from_someone_else else _shown_number(o),
        "amount": fmt.money(o.amount_minor, o.currency),
        "state": state.value,
        "state_text": translate(lang, STATE_TITLES[state]),
        "from_other": entry.from_someone_else,
        "paid_by": translate(lang, "Paid by {name}", name=entry.buyer) if entry.buyer
        else translate(lang, "Paid by a guest"),
        "receipt_id": result.get("receipt_id") if own_receipt else None,
        "receipt_number": result.get("receipt_number") if own_receipt else None,
    }


def _shown_number(order: Order) -> str:
    """The order's number as listed: a top-up of someone else's number stays masked."""
    if order.kind is OrderKind.guest_topup:
        return mask_phone(order.msisdn or "")
    return order.msisdn or ""


def _paged(rows: list[dict[str, Any]], total: int, number: int) -> dict[str, Any]:
    return {"rows": rows, "total": total, "page_no": number,
            "has_next": number * PAGE_SIZE < total, "has_prev": number > 1}


@router.get("/orders/{order_id}")
async def order_detail(
    request: Request, order_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if parse_uuid(order_id) is None:
        return not_found(request, visitor)
    if visitor.account is None:
        return login_redirect(request, visitor)
    try:
        order = await _my_order(session, order_id, visitor.account)
    except NotFound:
        return not_found(request, visitor)
    ctx = await order_context(request, visitor, session, rt, order)
    return page(request, visitor, "order_detail.html", ctx)


@router.post("/orders/{order_id}/cancel")
async def order_cancel(
    request: Request, order_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor, back=f"/orders/{order_id}")
    await checked_form(request, visitor, login=True)
    try:
        order = await _my_order(session, order_id, visitor.account)
    except NotFound:
        return not_found(request, visitor)
    try:
        await attempt(session, orders.cancel(session, order))
    except DomainError as exc:
        order = await _my_order(session, order_id, visitor.account)
        ctx = await order_context(request, visitor, session, rt, order)
        return page(request, visitor, "order_detail.html",
                    {**ctx, "error": describe(request, exc)}, status_code=exc.status,
                    at=f"/orders/{order.id}")
    return redirect(request, visitor, f"/orders/{order.id}?done=order_cancelled")


# ---------------------------------------------------------------- receipts


@router.get("/receipts")
async def my_receipts(request: Request, visitor: Viewer, session: Session) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    lang = request.state.language
    fmt = Formatter(lang)
    number = page_number(request)
    items, total = await receipts.list_for_account(
        session, visitor.account.id, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
    )
    rows = [
        {
            "id": r.id,
            "number": r.number,
            "date": fmt.date(r.issued_at),
            "what": ", ".join(receipts.item_name(i, lang) for i in r.items),
            "total": fmt.money(r.total_minor, r.currency),
            "method": method_name(r.payment_method, lang),
        }
        for r in items
    ]
    return page(request, visitor, "receipts.html", _paged(rows, total, number))


@router.get("/receipts/{receipt_id}.pdf")
async def receipt_pdf(
    request: Request, receipt_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    try:
        receipt = await _my_receipt(session, receipt_id, visitor.account)
    except NotFound:
        return not_found(request, visitor)
    data = await pdf.render_pdf_off_loop(receipt, language=request.state.language,
                                         settings=rt.settings)
    headers = {**PRIVATE, "Content-Disposition": f'attachment; filename="{receipt.number}.pdf"'}
    return Response(data, media_type="application/pdf", headers=headers)


@router.get("/receipts/{receipt_id}")
async def receipt_html(
    request: Request, receipt_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    try:
        receipt = await _my_receipt(session, receipt_id, visitor.account)
    except NotFound:
        return not_found(request, visitor)
    html = receipts.render_html(
        receipt, language=request.state.language, operator=rt.settings.operator_name,
        back=[("/receipts", N_("My receipts")), (f"/orders/{receipt.order_id}",
                                                  N_("Order details"))],
        pdf_url=f"/receipts/{receipt.id}.pdf",
    )
    return HTMLResponse(html, headers=PRIVATE)
