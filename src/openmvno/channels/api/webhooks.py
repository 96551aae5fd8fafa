"""POST /webhooks/{provider}: signed payment events, stored once and applied."""

from __future__ import annotations

from fastapi import APIRouter, Request

from openmvno.channels.api.schemas import PROBLEMS, ProviderName
from openmvno.payments import service as payments
from openmvno.payments.schemas import WebhookOut
from openmvno.web.deps import RT, Session

router = APIRouter(tags=["webhooks"], responses=PROBLEMS)  # type: ignore[arg-type]


@router.post("/webhooks/{provider}")
async def webhook(provider: ProviderName, request: Request, session: Session, rt: RT) -> WebhookOut:
    """A provider's event: 400 on a bad signature (nothing stored); a replay is a 200 no-op."""
    body = await request.body()
    outcome = await payments.handle_webhook(
        session, rt, provider_name=provider, body=body, headers=request.headers
    )
    return WebhookOut(outcome=outcome)
