"""Console login (staff only), the TOTP second factor, log out, and the staff member's
own security page (turn TOTP on with a QR code, or off)."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

import segno
from fastapi import APIRouter, Request
from fastapi.responses import Response

from openmvno.channels.console.web import (
    COOKIE,
    PATH,
    AnyDesk,
    Desk,
    StaffDesk,
    clear_cookie,
    describe,
    done,
    read_form,
    redirect,
    render,
    safe_next,
    set_cookie,
    staff_of,
)
from openmvno.errors import DomainError
from openmvno.staff import sessions as staff_sessions
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)
ANON_CSRF = "omv_console_csrf"


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _login_page(
    request: Request,
    desk: Desk,
    *,
    error: str | None = None,
    login: str = "",
    status_code: int = 200,
) -> Response:
    token = request.cookies.get(ANON_CSRF) or secrets.token_urlsafe(24)
    response = render(
        request,
        desk,
        "login.html",
        {
            "anon_csrf": token,
            "error": error,
            "login": login,
            "next": safe_next(request.query_params.get("next")),
        },
        status_code=status_code,
    )
    rt = request.app.state.runtime
    response.set_cookie(
        ANON_CSRF,
        token,
        httponly=True,
        samesite="strict",
        path=PATH,
        secure=rt.settings.secure_cookies,
    )
    return response


@router.get(PATH + "/login")
async def login_form(request: Request, desk: AnyDesk) -> Response:
    if desk.staff is not None and not desk.pending_second_factor:
        return redirect(PATH)
    return _login_page(request, desk)


@router.post(PATH + "/login")
async def login_submit(request: Request, desk: AnyDesk, session: Session, rt: RT) -> Response:
    form = await read_form(request, desk, login=False)
    login = form.get("login", "")
    nested = await session.begin_nested()
    try:
        raw, _row, needs_totp = await staff_sessions.login(
            session, rt, login=login, password=form.get("password", ""), client=_client(request)
        )
    except DomainError as exc:
        if exc.keep_changes:
            await nested.commit()
        else:
            await nested.rollback()
        return _login_page(
            request, Desk(None), error=describe(request, exc), login=login, status_code=exc.status
        )
    await nested.commit()
    target = safe_next(form.get("next"))
    second = f"{PATH}/second-factor?" + urlencode({"next": target})
    response = redirect(second if needs_totp else target)
    set_cookie(response, rt, raw)
    return response


@router.get(PATH + "/second-factor")
async def second_factor_form(request: Request, desk: AnyDesk) -> Response:
    if desk.staff is None:
        return redirect(f"{PATH}/login")
    if not desk.pending_second_factor:
        return redirect(PATH)
    return render(
        request, desk, "second_factor.html", {"next": safe_next(request.query_params.get("next"))}
    )


@router.post(PATH + "/second-factor")
async def second_factor_submit(request: Request, desk: AnyDesk, session: Session) -> Response:
    if desk.staff is None:
        return redirect(f"{PATH}/login")
    form = await read_form(request, desk)
    staff = staff_of(desk)
    nested = await session.begin_nested()
    try:
        await staff_sessions.check_totp(session, staff, form.get("code", ""))
    except DomainError as exc:
        await nested.commit()  # the wrong code is counted
        return render(
            request,
            desk,
            "second_factor.html",
            {"next": safe_next(form.get("next")), "error": describe(request, exc)},
            status_code=exc.status,
        )
    await nested.commit()
    return redirect(safe_next(form.get("next")))


@router.post(PATH + "/logout")
async def logout(request: Request, desk: AnyDesk, session: Session, rt: RT) -> Response:
    if desk.staff is not None:
        await read_form(request, desk)
        await staff_sessions.logout(session, desk.staff.session.id)
    response = done(f"{PATH}/login", "logged_out")
    clear_cookie(response, rt)
    response.delete_cookie(COOKIE, path="/")
    return response


# ---------------------------------------------------------------- my security (TOTP)


@router.get(PATH + "/security")
async def security_page(request: Request, desk: StaffDesk, session: Session, rt: RT) -> Response:
    staff = staff_of(desk)
    totp = await staff_sessions.totp_state(session, staff.account.id)
    qr_svg = uri = None
    if totp is not None and totp.enabled_at is None:
        uri = staff_sessions.provisioning_uri(rt, staff, totp.secret)
        qr_svg = segno.make(uri, error="m").svg_inline(scale=4, omitsize=False)
    return render(
        request,
        desk,
        "security.html",
        {"totp": totp, "qr_svg": qr_svg, "secret": totp.secret if uri and totp else None},
    )


@router.post(PATH + "/security/totp/start")
async def totp_start(request: Request, desk: StaffDesk, session: Session) -> Response:
    await read_form(request, desk)
    await staff_sessions.start_totp(session, staff_of(desk))
    return redirect(f"{PATH}/security")


@router.post(PATH + "/security/totp/enable")
async def totp_enable(request: Request, desk: StaffDesk, session: Session) -> Response:
    form = await read_form(request, desk)
    try:
        await staff_sessions.enable_totp(session, staff_of(desk), form.get("code", ""))
    except DomainError as exc:
        return render(
            request,
            desk,
            "error.html",
            {"title": "Two-step login", "message": describe(request, exc)},
            status_code=exc.status,
        )
    return done(f"{PATH}/security", "totp_on")


@router.post(PATH + "/security/totp/disable")
async def totp_disable(request: Request, desk: StaffDesk, session: Session) -> Response:
    form = await read_form(request, desk)
    try:
        await staff_sessions.disable_totp(session, staff_of(desk), form.get("code", ""))
    except DomainError as exc:
        return render(
            request,
            desk,
            "error.html",
            {"title": "Two-step login", "message": describe(request, exc)},
            status_code=exc.status,
        )
    return done(f"{PATH}/security", "totp_off")
