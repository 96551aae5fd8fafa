"""Paying an order from the portal, and the result page the payment provider sends the
payer back to (``/orders/{id}/result``), with its "pay again" form.

Payments go through :func:`openmvno.payments.service.pay`, which runs its own short
transactions; the request's own transaction is committed first (on SQLite it holds the
only write lock).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.channels.portal.order_views import (
    OPEN,
    order_context,
    portal_may_see,
    result_path,
    visible_order,
)
from openmvno.channels.portal.web import (
    Viewer,
    Visitor,
    attempt,
    checked_form,
    not_found,
    page,
    parse_uuid,
    redirect,
    redirect_with_error,
)
from openmvno.errors import DomainError, NotFound
from openmvno.orders import service as orders
from openmvno.orders.models import Order, OrderState
from openmvno.payments import service as payments
from openmvno.payments.models import PaymentAttempt
from openmvno.runtime import Runtime
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)


async def _release(session: AsyncSession) -> None:
    """End the request's transaction before a payment call opens its own."""
    await session.commit()


def _open_same(attempts: list[PaymentAttempt], method: str) -> PaymentAttempt | None:
    for a in reversed(attempts):
        if a.state in OPEN and str(a.method) == method:
            return a
    return None


async def pay_or_resume(
    request: Request, visitor: Visitor, session: AsyncSession, rt: Runtime, order: Order,
    method: str, *, fresh: bool = False, link: str | None = None,
) -> Response:
    """Send the payer on: to an already open payment of this order with this method (a
    resubmitted form), else start one; the wallet pays at once. Errors show on the
    order's result page. An order that is not ``fresh`` (just created) is first brought
    up to date with the provider, so a resubmission after paying lands on the result.
    ``link``: a guest order, reached (and returned to) through its link token."""
    done = result_path(order, link)
    if not fresh:
        await _release(session)
        order = await payments.refresh_order(
            rt, order_id=order.id, viewer=visitor.account, guest_link=link
        )
    if order.state != OrderState.pending_payment:
        await _release(session)
        return redirect(request, visitor, done)
    existing = _open_same(await orders.attempts_for(session, order.id), method)
    await _release(session)
    if existing is not None:
        url = existing.next_action.get("url")
        return redirect(request, visitor, url or done)
    try:
        started, order = await payments.pay(
            rt, order_id=order.id, method=method, viewer=visitor.account, guest_link=link
        )
    except NotFound:
        return not_found(request, visitor)
    except DomainError as exc:  # the order's own page says why (never this POST's address)
        return redirect_with_error(request, visitor, done, exc)
    url = started.next_action.get("url") if started.state in OPEN else None
    return redirect(request, visitor, url or done)


async def create_and_pay(
    request: Request, visitor: Visitor, session: AsyncSession, rt: Runtime, *,
    body: dict[str, Any], key: str, method: str, link: str | None = None,
) -> Response:
    """Create the order once per idempotency key (a DomainError is raised for the form to
    show), then pay it. ``link``: the token a guest's order is reached by (from the form,
    so the same form sent twice finds its order again)."""
    order, created = await attempt(
        session,
        orders.create(session, rt, account=visitor.account, idempotency_key=key, body=body,
                      language=request.state.language, guest_link=link),
    )
    link = link if order.guest_link_hash else None
    return await pay_or_resume(request, visitor, session, rt, order, method, fresh=created,
                               link=link)


async def result_page(
    request: Request, visitor: Visitor, session: AsyncSession, rt: Runtime,
    order_id: uuid.UUID | None, *, error: str | None = None, status_code: int = 200,
    link: str | None = None,
) -> Response:
    """The outcome of an order after asking the provider (never "wait and refresh");
    a guest order through its ``link``."""
    await _release(session)
    try:
        order = await payments.refresh_order(
            rt, order_id=order_id, viewer=visitor.account, guest_link=link
        )
    except NotFound:
        return not_found(request, visitor)
    if link is None and not portal_may_see(order, visitor.account):
        return not_found(request, visitor)
    ctx = await order_context(request, visitor, session, rt, order, link=link)
    return page(request, visitor, "order_result.html", {**ctx, "error": error},
                status_code=status_code, at=result_path(order, link))


@router.get("/orders/{order_id}/result")
async def order_result(
    request: Request, order_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    oid = parse_uuid(order_id)
    if oid is None:
        return not_found(request, visitor)
    return await result_page(request, visitor, session, rt, oid)


@router.post("/orders/{order_id}/pay")
async def order_pay(
    request: Request, order_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    """Pay an order again (another method after a decline); guests may, for their order."""
    form = await checked_form(request, visitor, login=False)
    oid = parse_uuid(order_id)
    if oid is None:
        return not_found(request, visitor)
    try:
        order = await visible_order(session, oid, visitor.account)
    except NotFound:
        return not_found(request, visitor)
    return await pay_or_resume(request, visitor, session, rt, order, form.get("method", ""))
