"""/api/v1/receipts: mine, one as JSON, HTML or PDF (owner and staff only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import HTMLResponse

from openmvno.channels.api.deps import RT, Language, Me, Session
from openmvno.channels.api.schemas import PROBLEMS
from openmvno.formatting import Formatter
from openmvno.receipts import pdf
from openmvno.receipts import service as receipts
from openmvno.receipts.models import Receipt
from openmvno.receipts.schemas import ReceiptOut, ReceiptPage

router = APIRouter(prefix="/api/v1", tags=["receipts"], responses=PROBLEMS)  # type: ignore[arg-type]
_PRIVATE = {"Cache-Control": "private, no-store"}


def receipt_out(r: Receipt, language: str) -> ReceiptOut:
    return ReceiptOut(
        id=r.id, number=r.number, order_id=r.order_id, buyer=r.buyer, msisdn=r.msisdn,
        items=r.items, total_minor=r.total_minor, currency=r.currency,
        total=Formatter(language).money(r.total_minor, r.currency),
        payment_method=r.payment_method, issued_at=r.issued_at,
        html_url=f"/api/v1/receipts/{r.id}.html", pdf_url=f"/api/v1/receipts/{r.id}.pdf",
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


@router.get("/receipts/{receipt_id}.html", response_class=HTMLResponse)
async def receipt_html(
    receipt_id: uuid.UUID, session: Session, rt: RT, me: Me, language: Language
) -> HTMLResponse:
    receipt = await receipts.get_visible(session, receipt_id, me)
    html = receipts.render_html(receipt, language=language, operator=rt.settings.operator_name)
    return HTMLResponse(html, headers=_PRIVATE)


@router.get(
    "/receipts/{receipt_id}.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
async def receipt_pdf(
    receipt_id: uuid.UUID, session: Session, rt: RT, me: Me, language: Language
) -> Response:
    receipt = await receipts.get_visible(session, receipt_id, me)
    data = pdf.render_pdf(
        receipt, language=language, operator=rt.settings.operator_name,
        font_path=rt.settings.receipt_font_path,
    )
    headers = {**_PRIVATE, "Content-Disposition": f'inline; filename="{receipt.number}.pdf"'}
    return Response(data, media_type="application/pdf", headers=headers)


@router.get("/receipts/{receipt_id}")
async def get_receipt(
    receipt_id: uuid.UUID, session: Session, me: Me, language: Language
) -> ReceiptOut:
    return receipt_out(await receipts.get_visible(session, receipt_id, me), language)
