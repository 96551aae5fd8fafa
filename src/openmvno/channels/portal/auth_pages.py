"""Portal pages without a login: home, register, verify, log in/out, forgot password."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from openmvno.accounts import service as accounts
from openmvno.accounts import tokens
from openmvno.accounts.models import Channel
from openmvno.channels.portal.web import (
    SESSION_COOKIE,
    Viewer,
    attempt,
    checked_form,
    clear_session_cookie,
    describe,
    page,
    redirect,
    redirect_with_error,
    safe_next,
    set_lang_cookie,
    set_session_cookie,
)
from openmvno.errors import DomainError
from openmvno.i18n import normalize_language
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)


def _channel(value: str | None) -> Channel | None:
    return Channel(value) if value in ("sms", "email") else None


def _client(request: Request) -> str:
    """The visitor's address, for the limits per client address."""
    return request.client.host if request.client else "unknown"


@router.get("/")
async def home(request: Request, visitor: Viewer) -> Response:
    if visitor.account is not None:
        return redirect(request, visitor, "/account")
    return page(request, visitor, "home.html")


# ---------------------------------------------------------------- register


@router.get("/register")
async def register_form(request: Request, visitor: Viewer) -> Response:
    values = {"language": request.state.language, "code_channel": "sms"}
    return page(request, visitor, "register.html", {"values": values})


@router.post("/register")
async def register_submit(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    form = await checked_form(request, visitor, login=False)
    language = normalize_language(form.get("language"), request.state.language)
    channel = _channel(form.get("code_channel"))
    phone = form.get("phone") or None
    email = form.get("email") or None
    if channel is Channel.email and not email:
        channel = None  # the service will pick SMS when there is no email
    if channel is Channel.sms and not phone:
        channel = None
    try:
        sent = await attempt(
            session,
            accounts.register(
                session, rt, name=form.get("name", ""), password=form.get("password", ""),
                phone=phone, email=email, language=language, code_channel=channel,
                client=_client(request),
            ),
        )
    except DomainError as exc:
        values = {k: v for k, v in form.items() if k != "password"}
        values["language"] = language
        return page(
            request, visitor, "register.html",
            {"values": values, "error": describe(request, exc)}, status_code=exc.status,
        )
    query = urlencode({"login": sent.login, "sent": sent.channel})
    response = redirect(request, visitor, "/verify?" + query)
    set_lang_cookie(response, rt, language)
    return response


# ---------------------------------------------------------------- verify


def _verify_page(
    request: Request, visitor: Viewer, login: str, *, sent: str = "", error: str | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request, visitor, "verify.html",
        {"login": login, "sent": sent, "error": error}, status_code=status_code,
        at="/verify", keep={"login": login} if login else None,
    )


@router.get("/verify")
async def verify_form(request: Request, visitor: Viewer) -> Response:
    q = request.query_params
    return _verify_page(request, visitor, q.get("login", ""), sent=q.get("sent", ""))


@router.post("/verify")
async def verify_submit(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    form = await checked_form(request, visitor, login=False)
    login = form.get("login", "")
    try:
        await attempt(
            session,
            accounts.verify(
                session, rt, login=login, code=form.get("code", ""), client=_client(request)
            ),
        )
    except DomainError as exc:
        return _verify_page(
            request, visitor, login, error=describe(request, exc), status_code=exc.status
        )
    return redirect(request, visitor, "/login?" + urlencode({"login": login, "done": "verified"}))


@router.post("/verify/resend")
async def verify_resend(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    form = await checked_form(request, visitor, login=False)
    login = form.get("login", "")
    try:
        sent = await attempt(
            session,
            accounts.resend(
                session, rt, login=login, channel=_channel(form.get("channel")),
                client=_client(request),
            ),
        )
    except DomainError as exc:  # the verify page says why (not at this POST's address)
        return redirect_with_error(
            request, visitor, "/verify?" + urlencode({"login": login}), exc
        )
    query = urlencode({"login": sent.login, "sent": sent.channel, "resent": "1"})
    return redirect(request, visitor, "/verify?" + query)


# ---------------------------------------------------------------- log in / out


@router.get("/login")
async def login_form(request: Request, visitor: Viewer) -> Response:
    q = request.query_params
    next_url = safe_next(q.get("next"))
    if visitor.account is not None and "done" not in q:
        return redirect(request, visitor, next_url)
    return page(
        request, visitor, "login.html", {"values": {"login": q.get("login", "")}, "next": next_url}
    )


@router.post("/login")
async def login_submit(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    form = await checked_form(request, visitor, login=False)
    next_url = safe_next(form.get("next"))
    login = form.get("login", "")
    try:
        account = await attempt(
            session,
            accounts.authenticate_password(
                session, rt, login=login, password=form.get("password", ""),
                client=_client(request),
            ),
        )
    except DomainError as exc:
        unverified = exc.code == "account_not_verified"
        return page(
            request, visitor, "login.html",
            {"values": {"login": login}, "next": next_url, "error": describe(request, exc),
             "unverified": unverified},
            status_code=exc.status, keep={"login": login, "next": next_url},
        )
    if visitor.has_session:  # replacing a session: end the old one
        await tokens.revoke(session, request.cookies.get(SESSION_COOKIE, ""))
    raw = await tokens.issue_session(session, rt, account)
    response = redirect(request, visitor, next_url)
    set_session_cookie(response, rt, raw)
    return response


@router.post("/logout")
async def logout(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    if visitor.account is None:
        return redirect(request, visitor, "/login")
    await checked_form(request, visitor, login=True)
    await tokens.revoke(session, request.cookies.get(SESSION_COOKIE, ""))
    response = redirect(request, visitor, "/login?done=logged_out")
    clear_session_cookie(response, rt)
    return response


# ---------------------------------------------------------------- forgot password


@router.get("/password/forgot")
async def forgot_form(request: Request, visitor: Viewer) -> Response:
    values = {"login": request.query_params.get("login", ""), "channel": "sms"}
    return page(request, visitor, "forgot.html", {"values": values})


@router.post("/password/forgot")
async def forgot_submit(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    form = await checked_form(request, visitor, login=False)
    login = form.get("login", "")
    try:
        await attempt(
            session,
            accounts.request_password_reset(
                session, rt, login=login, channel=_channel(form.get("channel")),
                client=_client(request),
            ),
        )
    except DomainError as exc:
        return page(
            request, visitor, "forgot.html",
            {"values": form, "error": describe(request, exc)}, status_code=exc.status,
        )
    return redirect(
        request, visitor, "/password/reset?" + urlencode({"login": login, "done": "reset_sent"})
    )


@router.get("/password/reset")
async def reset_form(request: Request, visitor: Viewer) -> Response:
    values = {"login": request.query_params.get("login", "")}
    return page(request, visitor, "reset.html", {"values": values})


@router.post("/password/reset")
async def reset_submit(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    form = await checked_form(request, visitor, login=False)
    login = form.get("login", "")
    try:
        await attempt(
            session,
            accounts.reset_password(
                session, rt, login=login, code=form.get("code", ""),
                new_password=form.get("password", ""), client=_client(request),
            ),
        )
    except DomainError as exc:
        return page(
            request, visitor, "reset.html",
            {"values": {"login": login}, "error": describe(request, exc)}, status_code=exc.status,
            keep={"login": login} if login else None,
        )
    response = redirect(
        request, visitor, "/login?" + urlencode({"login": login, "done": "password_reset"})
    )
    if visitor.has_session:
        clear_session_cookie(response, rt)  # every session ended with the reset
    return response

