"""``/dev/outbox``: the SMS and email that stayed in the outbox (dev adapters only).

Development only: the page shows every code sent, so it is mounted only while
``settings.dev_outbox_enabled`` (never in production), and answers 404 itself should it
ever be reached with settings that turn it off."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from openmvno.channels.portal.templating import render
from openmvno.errors import NotFound
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxKind
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)


@router.get("/dev/outbox", response_model=None)
async def dev_outbox(request: Request, session: Session, rt: RT) -> Response:
    if not rt.settings.dev_outbox_enabled:
        raise NotFound("not_found", "Nothing was found at this address.")
    kinds = [
        k
        for k, on in (
            (OutboxKind.sms, rt.settings.sms_adapter == "outbox"),
            (OutboxKind.email, rt.settings.email_adapter == "outbox"),
        )
        if on
    ]
    rows = await notifications.list_messages(session, kinds=kinds)
    items = [
        {
            "id": str(m.id),
            "channel": m.kind.value,
            "recipient": m.recipient,
            "subject": m.subject,
            "body": m.body,
            "state": m.state.value,
            "created_at": m.created_at.isoformat(),
        }
        for m in rows
    ]
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"messages": items})
    html: HTMLResponse = render(request, "dev_outbox.html", {"messages": items})
    return html
