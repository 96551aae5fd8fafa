"""/api/v1/orders (buy, renew, add-on, top-up; history; cancel; staff refund), the
guest top-up number check, and a guest's order through its link
(/api/v1/guest/orders/{token}: see, cancel, pay; the receipt is in receipts.py).

A guest order is never reachable by its id (only staff, audited); its number is masked
wherever it is shown."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.identity import mask_phone
from openmvno.channels.api.schemas import PROBLEMS, GuestLink
from openmvno.db import unit_of_work
from openmvno.fields import IdempotencyKey
from openmvno.formatting import Formatter
from openmvno.orders import service as orders
from openmvno.orders.models import Order, OrderKind
from openmvno.orders.schemas import (
    GuestLookupIn,
    GuestLookupOut,
    OrderIn,
    OrderOut,
    OrderPage,
    RefundIn,
)
from openmvno.payments import service as payments
from openmvno.payments.models import PaymentAttempt
from openmvno.payments.schemas import AttemptOut, PaymentIn, PaymentStarted
from openmvno.receipts import service as receipts
from openmvno.runtime import Runtime
from openmvno.web.deps import RT, Language, MaybeMe, Me, Session, Staff

router = APIRouter(prefix="/api/v1", tags=["orders"], responses=PROBLEMS)  # type: ignore[arg-type]
_bearer = HTTPBearer(auto_error=False)
GUEST = "/api/v1/guest/orders"


@asynccontextmanager
async def writable(session: AsyncSession, rt: Runtime) -> AsyncIterator[AsyncSession]:
    """A short transaction of its own to record an audit event from a read (a GET's own
    transaction may be read-only). The request's transaction is ended first: SQLite has a
    single writer, and what was read stays loaded."""
    await session.commit()
    async with unit_of_work(rt.sessions) as own:
        yield own


async def order_out(
    session: Session, order: Order, language: str, *, link: str | None = None,
    attempts: list[PaymentAttempt] | None = None,
) -> OrderOut:
    """The API view of an order (``link``: seen by a guest through its link token;
    ``attempts``: its payment attempts when already loaded, see ``my_orders``)."""
    if attempts is None:
        attempts = await orders.attempts_for(session, order.id)
    await receipts.fill_numbers(session, [order])  # no query when it has its number
    guest = order.kind is OrderKind.guest_topup
    return OrderOut(
        id=order.id,
        number=order.number,
        kind=order.kind,
        state=order.state,
        amount_minor=order.amount_minor,
        currency=order.currency,
        amount=Formatter(language).money(order.amount_minor, order.currency),
        description=order.description,
        line_id=None if guest else order.line_id,
        msisdn=mask_phone(order.msisdn) if guest and order.msisdn else order.msisdn,
        failure_code=order.failure_code,
        failure_reason=orders.failure_reason(language, order.failure_code),
        provisioning=order.provisioning,
        result=_with_links(order, link),
        payments=[AttemptOut(**payments.attempt_view(a, language)) for a in attempts],
        created_at=order.created_at,
        paid_at=order.paid_at,
        fulfilled_at=order.fulfilled_at,
        cancelled_at=order.cancelled_at,
        refunded_at=order.refunded_at,
    )


def _with_links(order: Order, link: str | None) -> dict[str, object]:
    result: dict[str, object] = dict(order.result)
    if "activation_code" in result and order.line_id:
        base = f"/api/v1/lines/{order.line_id}/esim"
        result.update(qr_png_url=f"{base}.png", qr_svg_url=f"{base}.svg")
    if "receipt_id" in result:
        rid = result["receipt_id"]
        base = f"{GUEST}/{link}/receipt" if link else f"/api/v1/receipts/{rid}"
        result.update(receipt_url=base, receipt_pdf_url=f"{base}.pdf")
    return result


@router.post("/orders", status_code=status.HTTP_201_CREATED)
async def create_order(
    body: OrderIn,
    response: Response,
    session: Session,
    rt: RT,
    me: MaybeMe,
    language: Language,
    idempotency_key: Annotated[IdempotencyKey | None, Header(alias="Idempotency-Key")] = None,
) -> OrderOut:
    """Create an order (201); the same `Idempotency-Key` and body returns the first order
    (200); the same key with another body is a 409 `idempotency_key_reused`. A
    `guest_topup` needs no login: its response (201 only) carries `guest_token`, the
    only way to the order afterwards (`/api/v1/guest/orders/{guest_token}`); it is never
    shown again, and replaying the create is a 409 `guest_order_exists`."""
    link = orders.new_guest_link() if me is None else None
    order, created = await orders.create(
        session, rt, account=me, idempotency_key=idempotency_key or "",
        body=body.model_dump(mode="json"), language=language, guest_link=link,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    out = await order_out(session, order, language, link=link)
    if created and link is not None:
        out.guest_token = link
        out.guest_url = f"{GUEST}/{link}"
        out.result_page_url = f"{rt.settings.public_url}/topup/orders/{link}"
    return out


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
    attempts = await orders.attempts_by_order(session, [o.id for o in items])
    await receipts.fill_numbers(session, items)
    return OrderPage(
        items=[await order_out(session, o, language, attempts=attempts[o.id]) for o in items],
        total=total, limit=limit, offset=offset,
    )


@router.get("/orders/{order_id}")
async def get_order(
    order_id: uuid.UUID, session: Session, rt: RT, me: MaybeMe, language: Language
) -> OrderOut:
    """One of my orders: state, failure reason, provisioning, result (staff: anyone's,
    audited)."""
    order = await orders.get_visible(session, order_id, me)
    if orders.staff_reaches(order, me):
        async with writable(session, rt) as audit_session:
            await orders.record_access(audit_session, order, me, "order.view")
    return await order_out(session, order, language)


@router.post("/orders/{order_id}/cancel")
async def cancel_order(
    order_id: uuid.UUID, session: Session, me: MaybeMe, language: Language
) -> OrderOut:
    """Cancel until paid (open payment attempts are cancelled too); after that, a 409.
    Staff cancelling someone's order is audited."""
    order = await orders.get_visible(session, order_id, me, audit_as="order.cancel")
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


# ---------------------------------------------------------------- a guest's order, by its link


@router.get("/guest/orders/{token}", tags=["guest"])
async def guest_order(token: GuestLink, session: Session, language: Language) -> OrderOut:
    """A guest's order through the link token from its creation (the number masked);
    any other token is a 404."""
    order = await orders.get_by_link(session, token)
    return await order_out(session, order, language, link=token)


@router.post("/guest/orders/{token}/cancel", tags=["guest"])
async def guest_cancel(token: GuestLink, session: Session, language: Language) -> OrderOut:
    """Cancel a guest's order until it is paid (then a 409 saying why)."""
    order = await orders.get_by_link(session, token)
    await orders.cancel(session, order)
    return await order_out(session, order, language, link=token)


@router.post(
    "/guest/orders/{token}/payments", tags=["guest"], status_code=status.HTTP_201_CREATED
)
async def guest_pay(
    token: GuestLink, body: PaymentIn, rt: RT, language: Language
) -> PaymentStarted:
    """Pay a guest's order (not from a wallet); `next_action` says where to go next, and
    the payment page sends the payer back to the order's page."""
    attempt, order = await payments.pay(
        rt, order_id=None, method=body.method, viewer=None, guest_link=token
    )
    view = AttemptOut(**payments.attempt_view(attempt, language))
    return PaymentStarted(attempt=view, order_state=str(order.state),
                          next_action=view.next_action)
