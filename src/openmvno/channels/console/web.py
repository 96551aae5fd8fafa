"""Console plumbing: who is at the desk (a staff session cookie scoped to ``/console``),
CSRF tokens, form checking, rendering and post/redirect/get. The same patterns as the
portal (no import of it: channels stay independent)."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from openmvno import fields, formatting
from openmvno.accounts.models import Account
from openmvno.db import unit_of_work
from openmvno.errors import DomainError, InvalidInput
from openmvno.i18n import N_, translate
from openmvno.runtime import Runtime
from openmvno.security import same
from openmvno.staff import sessions as staff_sessions
from openmvno.staff.sessions import Staff
from openmvno.web.deps import READ_METHODS, RT, Session

COOKIE = "omv_console"
PATH = "/console"
CSRF_FIELD = "csrf"
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class Desk:
    """The console visitor: a staff member with a live session (``staff``), or nobody."""

    staff: Staff | None
    pending_second_factor: bool = False

    @property
    def account(self) -> Account | None:
        return self.staff.account if self.staff else None

    @property
    def csrf(self) -> str:
        return self.staff.csrf if self.staff else ""


class LoginNeeded(Exception):
    """Answered with a redirect to the console login (see :func:`install`)."""

    def __init__(self, target: str) -> None:
        super().__init__("login")
        self.target = target


class NotAllowed(Exception):
    """A signed-in agent opened an admin page: a 403 page."""


class CsrfRefused(Exception):
    """A console form without its session's CSRF token: a 403 page."""


class AddressRefused(Exception):
    """A path or query value no console page accepts (a NUL, a control character, too
    long): a 404 for a path, a 400 for a query, before anything reads it."""

    def __init__(self, status: int) -> None:
        super().__init__("address")
        self.status = status


def _check_address(request: Request) -> None:
    for values, status in ((request.path_params, 404), (request.query_params, 400)):
        for value in values.values():
            try:
                fields.clean_text(str(value), max_length=2000, form="NFC")
            except ValueError as exc:
                raise AddressRefused(status) from exc


async def _desk(request: Request, session: Session, rt: RT) -> Desk:
    _check_address(request)
    found = await staff_sessions.lookup(session, request.cookies.get(COOKIE))
    if found is None:
        return Desk(None)
    account, row = found
    if staff_sessions.idle_due(rt, row):
        if request.method in READ_METHODS:
            # A GET runs read-only: the idle deadline moves in a short write of its own.
            async with unit_of_work(rt.sessions) as w:
                await staff_sessions.touch(w, rt, row.id)
        else:
            await staff_sessions.touch(session, rt, row.id)
    staff = Staff(account, row)
    if not row.second_factor_done:
        return Desk(staff, pending_second_factor=True)
    return Desk(staff)


def _target(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


async def any_desk(request: Request, session: Session, rt: RT) -> Desk:
    return await _desk(request, session, rt)


async def staff_desk(request: Request, session: Session, rt: RT) -> Desk:
    desk = await _desk(request, session, rt)
    if desk.staff is None or desk.pending_second_factor:
        raise LoginNeeded(_target(request) if request.method == "GET" else PATH)
    return desk


async def admin_desk(request: Request, session: Session, rt: RT) -> Desk:
    desk = await staff_desk(request, session, rt)
    assert desk.staff is not None
    if not desk.staff.is_admin:
        raise NotAllowed()
    return desk


AnyDesk = Annotated[Desk, Depends(any_desk)]
StaffDesk = Annotated[Desk, Depends(staff_desk)]
AdminDesk = Annotated[Desk, Depends(admin_desk)]


def staff_of(desk: Desk) -> Staff:
    assert desk.staff is not None
    return desk.staff


# ---------------------------------------------------------------- cookies and headers


def set_cookie(response: Response, rt: Runtime, raw: str) -> None:
    response.set_cookie(
        COOKIE,
        raw,
        max_age=rt.settings.console_session_hours * 3600,
        httponly=True,
        samesite="strict",
        secure=rt.settings.secure_cookies,
        path=PATH,
    )


def clear_cookie(response: Response, rt: Runtime) -> None:
    response.delete_cookie(
        COOKIE, httponly=True, samesite="strict", secure=rt.settings.secure_cookies, path=PATH
    )


def _finish(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


# ---------------------------------------------------------------- rendering

FLASHES: dict[str, str] = {
    "logged_out": N_("You are logged out."),
    "login_required": N_("Please log in to see this page."),
    "verified": N_("The caller is verified."),
    "code_sent": N_("A code was sent to the caller. Ask them to read it to you."),
    "link_sent": N_("The payment link was sent."),
    "paid": N_("The order is paid."),
    "cancelled": N_("The order is cancelled."),
    "moved": N_("The top-up was moved; both holders are told."),
    "refunded": N_("The order was refunded."),
    "refund_requested": N_("The refund waits for an admin's approval."),
    "noted": N_("The note was saved."),
    "saved": N_("Saved."),
    "totp_on": N_("Two-step login is on."),
    "totp_off": N_("Two-step login is off."),
}


def render(
    request: Request,
    desk: Desk,
    name: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    language: str = request.state.language
    rt: Runtime = request.app.state.runtime

    def t(message: str, **params: Any) -> str:
        return translate(language, message, **params)

    done = request.query_params.get("done", "")
    links = []
    for code, label in (("zh-CN", "中文"), ("en", "English")):
        params = {**dict(request.query_params), "lang": code}
        links.append({"code": code, "label": label, "href": "?" + urlencode(params)})
    ctx: dict[str, Any] = {
        "request": request,
        "lang": language,
        "t": t,
        "fmt": formatting.Formatter(language),
        "operator": rt.settings.operator_name,
        "path": request.url.path,
        "staff": desk.account,
        "is_admin": bool(desk.staff and desk.staff.is_admin),
        "csrf": desk.csrf,
        "lang_links": links,
        "flash": translate(language, FLASHES[done]) if done in FLASHES else None,
        "error": None,
    }
    ctx.update(context or {})
    html = env.get_template(name).render(ctx)
    response = HTMLResponse(html, status_code=status_code)
    if request.query_params.get("lang"):  # the choice sticks (the portal's cookie)
        response.set_cookie("lang", language, max_age=365 * 86400, httponly=True,
                            samesite="lax", secure=rt.settings.secure_cookies, path="/")
    return _finish(response)  # type: ignore[return-value]


def redirect(url: str) -> Response:
    return _finish(RedirectResponse(url, status_code=303))


def done(url: str, key: str) -> Response:
    """Post/redirect/get: back to ``url`` saying ``key`` (one of :data:`FLASHES`)."""
    sep = "&" if "?" in url else "?"
    return redirect(f"{url}{sep}done={key}")


def describe(request: Request, exc: DomainError) -> str:
    return translate(request.state.language, exc.message, **exc.params)


def error_page(request: Request, desk: Desk, status: int, title: str, message: str) -> HTMLResponse:
    lang = request.state.language
    return render(
        request,
        desk,
        "error.html",
        {"title": translate(lang, title), "message": message},
        status_code=status,
    )


def refused(request: Request, desk: Desk, exc: DomainError) -> HTMLResponse:
    """The page for a staff action a service refused (its status, its localised reason)."""
    return error_page(request, desk, exc.status, "The action was refused", describe(request, exc))


async def savepoint(session: Session, work: Awaitable[Any]) -> Any:
    """Run ``work`` in a savepoint of the request's transaction: a :class:`DomainError`
    undoes it (unless raised with ``keep_changes``, e.g. a wrong code that is counted),
    so the refused page commits nothing of it; anything else undoes it and propagates."""
    nested = await session.begin_nested()
    try:
        result = await work
    except DomainError as exc:
        await (nested.commit() if exc.keep_changes else nested.rollback())
        raise
    except BaseException:
        await nested.rollback()
        raise
    await nested.commit()
    return result


T = TypeVar("T")
R = TypeVar("R")


async def act(
    request: Request,
    desk: Desk,
    session: Session,
    load: Callable[[dict[str, str]], Awaitable[T | Response]],
    work: Callable[[dict[str, str], T], Awaitable[R]],
    then: Callable[[T, R], Response | Awaitable[Response]],
) -> Response:
    """The console's one way to act on a posted form: read the form (CSRF and field limits,
    :func:`read_form`); ``load`` what the address names (it answers a page instead to stop
    there: not found, verify the caller first...); run ``work`` in a :func:`savepoint` (a
    :class:`DomainError` answers the :func:`refused` page); then answer ``then`` (usually
    post/redirect/get with a done code, :func:`done`)."""
    form = await read_form(request, desk)
    target = await load(form)
    if isinstance(target, Response):
        return target
    try:
        result = await savepoint(session, work(form, target))
    except DomainError as exc:
        return refused(request, desk, exc)
    answer = then(target, result)
    return await answer if inspect.isawaitable(answer) else answer


def safe_next(value: str | None) -> str:
    if not value or not value.startswith(PATH) or value.startswith("//") or "\\" in value:
        return PATH
    if any(ord(ch) < 32 for ch in value):
        return PATH
    parts = urlsplit(value)
    return PATH if parts.scheme or parts.netloc else value


def parse_uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


# ---------------------------------------------------------------- forms

LIMITS: dict[str, tuple[int, fields.Form, bool]] = {
    # name: (max length, normal form, multiline)
    "login": (254, "NFKC", False),
    "password": (128, "NFC", False),
    "code": (12, "NFKC", False),
    "q": (254, "NFKC", False),
    "serial": (80, "NFKC", False),
    "name": (100, "NFC", False),
    "reason": (500, "NFC", True),
    "note": (2000, "NFC", True),
    "reference": (120, "NFKC", False),
    "msisdn": (32, "NFKC", False),
    "amount": (32, "NFKC", False),
    "email": (254, "NFKC", False),
    "body": (2000, "NFC", True),
    "subject": (200, "NFC", False),
    "next": (2000, "NFC", False),
    "csrf": (200, "NFC", False),
    "name_zh": (100, "NFC", False),
    "name_en": (100, "NFC", False),
    "terms_zh": (2000, "NFC", True),
    "terms_en": (2000, "NFC", True),
    "days": (64, "NFKC", False),  # the reminder schedule, "7, 3, 1"
}
DEFAULT_LIMIT: tuple[int, fields.Form, bool] = (200, "NFC", False)
SECRETS = ("password",)


class FormRefused(InvalidInput):
    """A form field the console refuses (too long, a control character)."""


async def read_form(request: Request, desk: Desk, *, login: bool = True) -> dict[str, str]:
    """The posted form once its CSRF token is right (else :class:`CsrfRefused`) and every
    field is within its limits (else :class:`FormRefused`, shown on an error page)."""
    raw = await request.form()
    out: dict[str, str] = {}
    problem: FormRefused | None = None
    for key, value in raw.multi_items():
        if not isinstance(value, str):
            continue
        size, form, multiline = LIMITS.get(key, DEFAULT_LIMIT)
        try:
            cleaned = fields.clean_text(
                value, max_length=size, multiline=multiline, form=form, strip=key not in SECRETS
            )
            out[key] = value if key in SECRETS else cleaned  # a password is checked, kept
        except ValueError:
            problem = problem or FormRefused(
                "form_invalid",
                "{field} is not valid: too long, or it holds a character that cannot be used.",
                field=key,
            )
    sent = out.get(CSRF_FIELD, "")
    if login:
        if not desk.csrf or not same(sent, desk.csrf):
            raise CsrfRefused()
    elif not same(sent, request.cookies.get("omv_console_csrf", "")) or not sent:
        raise CsrfRefused()
    if problem is not None:
        raise problem
    return out


def install(app: FastAPI) -> None:
    """The console's own answers: a login redirect, 403 pages, a refused form."""

    @app.exception_handler(LoginNeeded)
    async def _login(request: Request, exc: LoginNeeded) -> Response:
        query = urlencode({"next": exc.target, "done": "login_required"})
        return redirect(f"{PATH}/login?{query}")

    @app.exception_handler(NotAllowed)
    async def _forbidden(request: Request, exc: NotAllowed) -> Response:
        return error_page(
            request,
            Desk(None),
            403,
            N_("Not allowed"),
            translate(request.state.language, "This page is for admins."),
        )

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, exc: CsrfRefused) -> Response:
        return error_page(
            request,
            Desk(None),
            403,
            N_("This form has expired"),
            translate(request.state.language, "Reload the page and send the form again."),
        )

    @app.exception_handler(AddressRefused)
    async def _address(request: Request, exc: AddressRefused) -> Response:
        lang = request.state.language
        if exc.status == 404:
            return error_page(request, Desk(None), 404, N_("Not found"),
                              translate(lang, "There is no page at this address."))
        return error_page(request, Desk(None), 400, N_("This address is not valid"),
                          translate(lang, "Something in the address was not valid."))

    @app.exception_handler(FormRefused)
    async def _refused(request: Request, exc: FormRefused) -> Response:
        return error_page(
            request, Desk(None), 422, N_("Please correct the form"), describe(request, exc)
        )
