"""/api/v1/orders/{id}/payments and /api/v1/payment-methods."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from openmvno.channels.api.schemas import PROBLEMS
from openmvno.payments import service as payments
from openmvno.payments.schemas import AttemptOut, MethodOut, PaymentIn, PaymentStarted
from openmvno.receipts.service import method_name
from openmvno.staff import runtime_settings
from openmvno.web.deps import RT, Language, MaybeMe, Session

router = APIRouter(prefix="/api/v1", tags=["payments"], responses=PROBLEMS)  # type: ignore[arg-type]


@router.get("/payment-methods")
async def payment_methods(rt: RT, language: Language, session: Session) -> list[MethodOut]:
    """The payment methods this operator accepts (those an admin switched off are left out)."""
    await runtime_settings.refresh(session, rt)
    return [
        MethodOut(method=m, name=method_name(m, language)) for m in payments.enabled_methods(rt)
    ]


@router.post(
    "/orders/{order_id}/payments",
    status_code=status.HTTP_201_CREATED,
    responses={402: {"description": "Not enough wallet balance"}},
)
async def pay_order(
    order_id: uuid.UUID, body: PaymentIn, rt: RT, me: MaybeMe, language: Language
) -> PaymentStarted:
    """Pay with a method: `wallet` pays at once (402 `insufficient_balance` if short); the
    others return `next_action` (open the payment page, scan a QR, make a transfer)."""
    attempt, order = await payments.pay(rt, order_id=order_id, method=body.method, viewer=me)
    view = AttemptOut(**payments.attempt_view(attempt, language))
    return PaymentStarted(attempt=view, order_state=str(order.state),
                          next_action=view.next_action)
