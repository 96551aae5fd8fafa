"""Portal: my notification settings (SMS and/or email for notices, offers yes or no)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from openmvno.channels.portal.web import (
    Viewer,
    attempt,
    checked_form,
    describe,
    login_redirect,
    page,
    redirect,
)
from openmvno.errors import DomainError
from openmvno.notifications import preferences
from openmvno.web.deps import Session

router = APIRouter(include_in_schema=False)
PATH = "/account/notifications"


@router.get(PATH)
async def preferences_page(request: Request, visitor: Viewer, session: Session) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    prefs = await preferences.get_preferences(session, account_id=visitor.account.id)
    saved = request.query_params.get("done") == "saved"
    return page(request, visitor, "preferences.html", {"prefs": prefs, "saved": saved})


@router.post(PATH)
async def preferences_submit(request: Request, visitor: Viewer, session: Session) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor, back=PATH)
    form = await checked_form(request, visitor, login=True)
    wanted = {name: form.get(name) == "on" for name in ("sms", "email", "marketing")}
    try:
        await attempt(session, preferences.set_preferences(
            session, account_id=visitor.account.id, **wanted))
    except DomainError as exc:
        prefs = await preferences.get_preferences(session, account_id=visitor.account.id)
        return page(request, visitor, "preferences.html",
                    {"prefs": prefs, "error": describe(request, exc)}, status_code=exc.status)
    return redirect(request, visitor, f"{PATH}?done=saved")
