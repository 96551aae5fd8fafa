"""``POST /sms/inbound``: HTTP SMS gateways hand us MO messages (same commands as SMPP).

Signed with the shared secret ``sms_inbound_secret``: ``X-Timestamp`` (Unix seconds) and
``X-Signature`` = hex HMAC-SHA256 of ``"{timestamp}.{raw body}"``. A timestamp outside
``sms_inbound_window_seconds`` is refused (replay window) and a message id already taken
runs nothing again (``inbound_messages``), so a replay inside the window is a no-op too.
Body (JSON): ``{"id": "...", "from": "+86...", "to": "10086", "text": "BAL"}``. The reply
goes back through the outbox (SMPP, or whatever SMS adapter is set).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import Field, ValidationError

from openmvno.channels.sms.commands import handle
from openmvno.errors import DomainError, InvalidInput
from openmvno.fields import ExternalId, Phone, Strict, text
from openmvno.web.deps import RT

router = APIRouter(tags=["sms"])
SmsText = Annotated[str, text(1600, multiline=True)]
ShortCode = Annotated[str, text(32, form="NFKC")]


class BadSignature(DomainError):
    status = 401


class InboundSms(Strict):
    id: ExternalId
    sender: Phone = Field(alias="from")
    to: ShortCode = ""
    text: SmsText


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature a gateway sends (also used by tests and the docs' example)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _refused() -> BadSignature:
    return BadSignature("bad_signature", "The request is not signed with the shared secret.")


def check_signature(secret: str, window: int, timestamp: str | None, signature: str | None,
                    body: bytes, now: float) -> None:
    if not secret or not timestamp or not signature or len(timestamp) > 20:
        raise _refused()
    if not timestamp.isascii() or not timestamp.isdigit():
        raise _refused()
    if abs(now - int(timestamp)) > window:
        raise BadSignature("stale_request", "The request is too old (or from the future).")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip().lower()):
        raise _refused()


@router.post("/sms/inbound", status_code=200, include_in_schema=False)
async def inbound(request: Request, rt: RT) -> dict[str, str]:
    """Take one MO message: 200 ``accepted`` (reply queued) or ``ignored`` (a replay, or a
    sender over the limit who was already told); 401 when
    unsigned, badly signed or outside the replay window; 422 for a bad body."""
    from openmvno import clock

    body = await request.body()
    check_signature(rt.settings.sms_inbound_secret.get_secret_value(),
                    rt.settings.sms_inbound_window_seconds, request.headers.get("x-timestamp"),
                    request.headers.get("x-signature"), body, clock.now().timestamp())
    try:
        message = InboundSms.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidInput("invalid_message", "This is not an SMS message we can take.") from exc
    reply = await handle(rt, sender=message.sender, text=message.text, channel="http",
                         external_id=message.id)
    return {"status": "accepted" if reply is not None else "ignored"}
