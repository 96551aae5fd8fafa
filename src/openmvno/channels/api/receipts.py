"""/api/v1/receipts: mine, one as JSON, HTML or PDF (owner and staff only; staff reading
someone else's is audited), and a guest's through the order link
(/api/v1/guest/orders/{token}/receipt)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import HTMLResponse

from openmvno.accounts.models import Account
from openmvno.channels.api.orders import writable
from openmvno.channels.api.schemas import PROBLEMS, GuestLink
from openmvno.formatting import Formatter
from openmvno.orders import service as orders
from openmvno.receipts import pdf
from openmvno.receipts import service as receipts
from openmvno.receipts.models import Receipt
from openmvno.receipts.schemas import ReceiptOut, ReceiptPage
from openmvno.web.deps import RT, Language, Me, Session

router = APIRouter(prefix="/api/v1", tags=["receipts"], responses=PROBLEMS)  # type: ignore[arg-type]
_PRIVATE = {"Cache-Control": "private, no-store"}


def receipt_out(r: Receipt, language: str, *, link: str | None = None) -> ReceiptOut:
    base = f"/api/v1/guest/orders/{link}/receipt" if link else f"/api/v1/receipts/{r.id}"
    return ReceiptOut(
        id=r.id, number=r.number, order_id=r.order_id, buyer=r.buyer, msisdn=r.msisdn,
        items=r.items, total_minor=r.total_minor, currency=r.currency,
        total=Formatter(language).money(r.total_minor, r.currency),
        payment_method=r.payment_method, issued_at=r.issued_at,
        html_url=f"{base}.html", pdf_url=f"{base}.pdf",
    )


@router.get("/receipts")
async def my_receipts(
    session: Session, me: Me, language: Language,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ReceiptPage:
    """My receipts, newest first."""
    items, total = await receipts.list_for_account(session, me.id, limit=limit, offset=offset)
    return ReceiptPage(items=[receipt_out(r, language) for r in items], total=total)


async def _visible(session: Session, rt: RT, receipt_id: uuid.UUID, me: Account) -> Receipt:
    """The receipt if the caller may see it; staff reading someone else's is audited."""
    receipt = await receipts.get_visible(session, receipt_id, me)
    if receipts.staff_reads(receipt, me):
        async with writable(session, rt) as audit_session:
            await receipts.record_view(audit_session, receipt, me)
    return receipt


def _html(receipt: Receipt, rt: RT, language: str) -> HTMLResponse:
    html = receipts.render_html(receipt, language=language, operator=rt.settings.operator_name)
    return HTMLResponse(html, headers=_PRIVATE)


async def _pdf(receipt: Receipt, rt: RT, language: str) -> Response:
    data = await pdf.render_pdf_off_loop(receipt, language=language, settings=rt.settings)
    headers = {**_PRIVATE, "Content-Disposition": f'inline; filename="{receipt.number}.pdf"'}
    return Response(data, media_type="application/pdf", headers=headers)


@router.get("/receipts/{receipt_id}.html", response_class=HTMLResponse)
async def receipt_html(
    receipt_id: uuid.UUID, session: Session, rt: RT, me: Me, language: Language
) -> HTMLResponse:
    return _html(await _visible(session, rt, receipt_id, me), rt, language)


@router.get(
    "/receipts/{receipt_id}.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
async def receipt_pdf(
    receipt_id: uuid.UUID, session: Session, rt: RT, me: Me, language: Language
) -> Response:
    return await _pdf(await _visible(session, rt, receipt_id, me), rt, language)


@router.get("/receipts/{receipt_id}")
async def get_receipt(
    receipt_id: uuid.UUID, session: Session, rt: RT, me: Me, language: Language
) -> ReceiptOut:
    return receipt_out(await _visible(session, rt, receipt_id, me), language)


async def _guest_receipt(session: Session, token: str) -> Receipt:
    """The receipt of the guest order behind this link (404 for any other token, or
    before the order is fulfilled)."""
    return await receipts.of_order(session, await orders.get_by_link(session, token))


@router.get("/guest/orders/{token}/receipt.html", response_class=HTMLResponse, tags=["guest"])
async def guest_receipt_html(
    token: GuestLink, session: Session, rt: RT, language: Language
) -> HTMLResponse:
    return _html(await _guest_receipt(session, token), rt, language)


@router.get(
    "/guest/orders/{token}/receipt.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
    tags=["guest"],
)
async def guest_receipt_pdf(
    token: GuestLink, session: Session, rt: RT, language: Language
) -> Response:
    return await _pdf(await _guest_receipt(session, token), rt, language)


@router.get("/guest/orders/{token}/receipt", tags=["guest"])
async def guest_receipt(token: GuestLink, session: Session, language: Language) -> ReceiptOut:
    """A guest's receipt (the number masked), through the order's link token."""
    return receipt_out(await _guest_receipt(session, token), language, link=token)
