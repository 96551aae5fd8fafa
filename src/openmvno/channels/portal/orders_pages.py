"""Portal pages: my orders (renewal history), one order with its cancel button, and my
receipts (HTML view and PDF download, owner only)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from openmvno.channels.api.deps import RT, Session
from openmvno.channels.portal.shop_pages import (
    STATE_TITLES,
    order_context,
    order_what,
    plan_names,
)
from openmvno.channels.portal.web import (
    FLASHES,
    Viewer,
    attempt,
    checked_form,
    describe,
    login_redirect,
    not_found,
    page,
    redirect,
)
from openmvno.errors import DomainError, NotFound
from openmvno.formatting import Formatter
from openmvno.i18n import N_, translate
from openmvno.orders import service as orders
from openmvno.orders.models import OrderState
from openmvno.receipts import pdf
from openmvno.receipts import service as receipts
from openmvno.receipts.service import method_name

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 20
FLASHES["order_cancelled"] = N_("The order was cancelled.")
_PRIVATE = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


def _uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def _page_no(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return max(1, int(raw)) if raw.isdigit() and len(raw) < 6 else 1


@router.get("/orders")
async def my_orders(request: Request, visitor: Viewer, session: Session) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    lang = request.state.language
    fmt = Formatter(lang)
    number = _page_no(request)
    items, total = await orders.list_for_account(
        session, visitor.account.id, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
    )
    names = await plan_names(session, lang)
    rows = [
        {
            "id": o.id,
            "number": o.number,
            "date": fmt.date(o.created_at),
            "what": order_what(o, names, lang),
            "msisdn": o.msisdn or "",
            "amount": fmt.money(o.amount_minor, o.currency),
            "state": OrderState(o.state).value,
            "state_text": translate(lang, STATE_TITLES[OrderState(o.state)]),
        }
        for o in items
    ]
    return page(
        request, visitor, "orders.html",
        {"rows": rows, "total": total, "page_no": number,
         "has_next": number * PAGE_SIZE < total, "has_prev": number > 1},
    )


@router.get("/orders/{order_id}")
async def order_detail(
    request: Request, order_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    oid = _uuid(order_id)
    if oid is None:
        return not_found(request, visitor)
    if visitor.account is None:
        return login_redirect(request, visitor)
    try:
        order = await orders.get_visible(session, oid, visitor.account)
    except NotFound:
        return not_found(request, visitor)
    if order.account_id != visitor.account.id:
        return not_found(request, visitor)
    ctx = await order_context(request, visitor, session, rt, order)
    return page(request, visitor, "order_detail.html", ctx)


@router.post("/orders/{order_id}/cancel")
async def order_cancel(
    request: Request, order_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    await checked_form(request, visitor, login=True)
    oid = _uuid(order_id)
    if oid is None:
        return not_found(request, visitor)
    try:
        order = await orders.get_visible(session, oid, visitor.account)
        if order.account_id != visitor.account.id:
            raise NotFound("order_not_found", "There is no such order.")
    except NotFound:
        return not_found(request, visitor)
    try:
        await attempt(session, orders.cancel(session, order))
    except DomainError as exc:
        order = await orders.get_visible(session, oid, visitor.account)
        ctx = await order_context(request, visitor, session, rt, order)
        return page(request, visitor, "order_detail.html",
                    {**ctx, "error": describe(request, exc)}, status_code=exc.status)
    return redirect(request, visitor, f"/orders/{order.id}?done=order_cancelled")


# ---------------------------------------------------------------- receipts


@router.get("/receipts")
async def my_receipts(request: Request, visitor: Viewer, session: Session) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    lang = request.state.language
    fmt = Formatter(lang)
    number = _page_no(request)
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
    return page(
        request, visitor, "receipts.html",
        {"rows": rows, "total": total, "page_no": number,
         "has_next": number * PAGE_SIZE < total, "has_prev": number > 1},
    )


@router.get("/receipts/{receipt_id}.pdf")
async def receipt_pdf(
    request: Request, receipt_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    rid = _uuid(receipt_id)
    try:
        if rid is None:
            raise NotFound("receipt_not_found", "There is no such receipt.")
        receipt = await receipts.get_visible(session, rid, visitor.account)
    except NotFound:
        return not_found(request, visitor)
    data = pdf.render_pdf(
        receipt, language=request.state.language, operator=rt.settings.operator_name,
        font_path=rt.settings.receipt_font_path,
    )
    headers = {**_PRIVATE, "Content-Disposition": f'attachment; filename="{receipt.number}.pdf"'}
    return Response(data, media_type="application/pdf", headers=headers)


@router.get("/receipts/{receipt_id}")
async def receipt_html(
    request: Request, receipt_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    rid = _uuid(receipt_id)
    try:
        if rid is None:
            raise NotFound("receipt_not_found", "There is no such receipt.")
        receipt = await receipts.get_visible(session, rid, visitor.account)
    except NotFound:
        return not_found(request, visitor)
    html = receipts.render_html(
        receipt, language=request.state.language, operator=rt.settings.operator_name
    )
    return HTMLResponse(html, headers=_PRIVATE)
