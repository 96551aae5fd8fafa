"""/api/v1/orders (buy, renew, add-on, top-up; history; cancel; staff refund) and the
guest top-up number check."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.security import HTTPBearer

from openmvno.channels.api.deps import RT, Language, MaybeMe, Me, Session, Staff
from openmvno.channels.api.schemas import PROBLEMS
from openmvno.formatting import Formatter
from openmvno.orders import service as orders
from openmvno.orders.models import Order
from openmvno.orders.schemas import (
    GuestLookupIn,
    GuestLookupOut,
    OrderIn,
    OrderOut,
    OrderPage,
    RefundIn,
)
from openmvno.payments import service as payments
from openmvno.payments.schemas import AttemptOut

router = APIRouter(prefix="/api/v1", tags=["orders"], responses=PROBLEMS)  # type: ignore[arg-type]
_bearer = HTTPBearer(auto_error=False)





async def order_out(session: Session, order: Order, language: str) -> OrderOut:
    attempts = await orders.attempts_for(session, order.id)
    return OrderOut(
        id=order.id,
        number=order.number,
        kind=order.kind,
        state=order.state,
        amount_minor=order.amount_minor,
        currency=order.currency,
        amount=Formatter(language).money(order.amount_minor, order.currency),
        description=order.description,
        line_id=order.line_id,
        msisdn=order.msisdn,
        failure_code=order.failure_code,
        failure_reason=orders.failure_reason(language, order.failure_code),
        provisioning=order.provisioning,
        result=_with_links(order),
        payments=[AttemptOut(**payments.attempt_view(a, language)) for a in attempts],
        created_at=order.created_at,
        paid_at=order.paid_at,
        fulfilled_at=order.fulfilled_at,
        cancelled_at=order.cancelled_at,
        refunded_at=order.refunded_at,
    )


def _with_links(order: Order) -> dict[str, object]:
    result: dict[str, object] = dict(order.result)
    if "activation_code" in result and order.line_id:
        base = f"/api/v1/lines/{order.line_id}/esim"
        result.update(qr_png_url=f"{base}.png", qr_svg_url=f"{base}.svg")
    if "receipt_id" in result:
        rid = result["receipt_id"]
        result.update(receipt_url=f"/api/v1/receipts/{rid}",
                      receipt_pdf_url=f"/api/v1/receipts/{rid}.pdf")
    return result


@router.post("/orders", status_code=status.HTTP_201_CREATED)
async def create_order(
    body: OrderIn,
    response: Response,
    session: Session,
    rt: RT,
    me: MaybeMe,
    language: Language,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> OrderOut:
    """Create an order (201); the same `Idempotency-Key` and body returns the first order
    (200); the same key with another body is a 409 `idempotency_key_reused`. A
    `guest_topup` needs no login."""
    order, created = await orders.create(
        session, rt, account=me, idempotency_key=idempotency_key or "",
        body=body.model_dump(mode="json"), language=language,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return await order_out(session, order, language)


@router.get("/orders")
async def my_orders(
    session: Session,
    me: Me,
    language: Language,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> OrderPage:
    """My orders, newest first (renewal history)."""
    items, total = await orders.list_for_account(session, me.id, limit=limit, offset=offset)
    return OrderPage(
        items=[await order_out(session, o, language) for o in items],
        total=total, limit=limit, offset=offset,
    )


@router.get("/orders/{order_id}")
async def get_order(
    order_id: uuid.UUID, session: Session, me: MaybeMe, language: Language
) -> OrderOut:
    """One of my orders: state, failure reason, provisioning, result."""
    order = await orders.get_visible(session, order_id, me)
    return await order_out(session, order, language)


@router.post("/orders/{order_id}/cancel")
async def cancel_order(
    order_id: uuid.UUID, session: Session, me: MaybeMe, language: Language
) -> OrderOut:
    """Cancel until paid (open payment attempts are cancelled too); after that, a 409."""
    order = await orders.get_visible(session, order_id, me)
    await orders.cancel(session, order)
    return await order_out(session, order, language)


@router.post("/orders/{order_id}/refund")
async def refund_order(
    order_id: uuid.UUID, body: RefundIn, session: Session, rt: RT, staff: Staff,
    language: Language,
) -> OrderOut:
    """Staff: refund a fulfilled order (audited)."""
    order = await orders.get_visible(session, order_id, staff)
    await orders.refund(session, rt, order, actor=staff, reason=body.reason)
    return await order_out(session, order, language)


@router.post("/guest/topup/lookup")
async def guest_topup_lookup(
    body: GuestLookupIn, request: Request, session: Session, rt: RT
) -> GuestLookupOut:
    """Confirm a number before a guest top-up: the owner's masked name (rate-limited)."""
    client = request.client.host if request.client else "unknown"
    return GuestLookupOut(**await orders.guest_lookup(session, rt, body.msisdn, client=client))
