"""Portal plumbing: who is visiting (session cookie), CSRF tokens, cookies,
safe redirects, form parsing and rendering a service error on its form."""

from __future__ import annotations

import base64
import inspect
import json
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException

from openmvno import clock
from openmvno.accounts import service as accounts
from openmvno.accounts import tokens
from openmvno.accounts.models import Account, AuthToken, TokenKind
from openmvno.channels.portal import forms
from openmvno.channels.portal.templating import render
from openmvno.db import unit_of_work
from openmvno.errors import DomainError, NotFound, TooManyAttempts
from openmvno.i18n import LANGUAGES, N_, Term, normalize_language, translate
from openmvno.runtime import Runtime
from openmvno.security import keyed_digest, same
from openmvno.staff import runtime_settings
from openmvno.web.deps import RT, Session

SESSION_COOKIE = "omv_session"
CSRF_COOKIE = "omv_csrf"
LANG_COOKIE = "lang"
CSRF_FIELD = "csrf"

T = TypeVar("T")
log = logging.getLogger("openmvno.errors")


@dataclass
class Visitor:
    """The person behind this request: an account with its session, or anonymous."""

    account: Account | None
    has_session: bool
    csrf: str
    """Token for forms that need a login: derived from the session's csrf_secret."""
    anon_csrf: str
    """Signed double-submit value (cookie == form field) for anonymous forms."""
    set_anon_cookie: bool
    secret_key: str


def _sign_anon(secret_key: str, nonce: str) -> str:
    return f"{nonce}.{keyed_digest(secret_key, 'portal-anon-csrf:' + nonce)}"


def _valid_anon(secret_key: str, value: str | None) -> bool:
    if not value or "." not in value:
        return False
    nonce, _, _sig = value.partition(".")
    return same(value, _sign_anon(secret_key, nonce))


async def get_visitor(request: Request, session: Session, rt: RT) -> Visitor:
    """Resolve the session cookie (if any) and the anonymous CSRF cookie."""
    account: Account | None = None
    token: AuthToken | None = None
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        token = await tokens.lookup(session, raw, TokenKind.session)
        if token is not None:
            try:
                found = await accounts.get(session, token.account_id)
            except NotFound:
                found = None
            if found is not None and found.active:
                account = found
            else:
                token = None
    await runtime_settings.refresh(session, rt)  # payment methods switched on the console
    anon = request.cookies.get(CSRF_COOKIE)
    fresh = not _valid_anon(rt.secret_key, anon)
    if fresh:
        anon = _sign_anon(rt.secret_key, secrets.token_urlsafe(16))
    assert anon is not None
    csrf = keyed_digest(token.csrf_secret, "portal-csrf") if token and token.csrf_secret else ""
    visitor = Visitor(account, token is not None, csrf, anon, fresh, rt.secret_key)
    # The address itself gets the forms' limits: no page reads a NUL or a 10,000-character
    # value from its query string or path.
    for values, status in ((request.path_params, 404), (request.query_params, 400)):
        _, problem = forms.clean({str(k): str(v) for k, v in values.items()})
        if problem is not None:
            raise AddressRefused(visitor, problem, status)
    return visitor


Viewer = Annotated[Visitor, Depends(get_visitor)]


# ---------------------------------------------------------------- cookies


def _cookie_kwargs(rt: Runtime) -> dict[str, Any]:
    return {"httponly": True, "samesite": "lax", "secure": rt.settings.secure_cookies, "path": "/"}


def set_session_cookie(response: Response, rt: Runtime, raw_token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, raw_token, max_age=rt.settings.session_days * 86400, **_cookie_kwargs(rt)
    )


def clear_session_cookie(response: Response, rt: Runtime) -> None:
    response.delete_cookie(SESSION_COOKIE, **_cookie_kwargs(rt))


def set_lang_cookie(response: Response, rt: Runtime, language: str) -> None:
    response.set_cookie(LANG_COOKIE, language, max_age=365 * 86400, **_cookie_kwargs(rt))


def _finish(request: Request, visitor: Visitor, response: Response) -> Response:
    rt: Runtime = request.app.state.runtime
    if visitor.set_anon_cookie:
        response.set_cookie(CSRF_COOKIE, visitor.anon_csrf, **_cookie_kwargs(rt))
        visitor.set_anon_cookie = False
    asked = request.query_params.get("lang")
    if asked:
        set_lang_cookie(response, rt, normalize_language(asked, rt.settings.default_language))
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


# ---------------------------------------------------------------- rendering

FLASHES: dict[str, str] = {
    "verified": N_("Your account is verified. Log in to continue."),
    "password_reset": N_("Your password was changed. Log in with the new password."),
    "logged_out": N_("You are logged out."),
    "bound": N_("The device is now bound to your account."),
    "unbound": N_("The device was unbound from your account."),
    "reset_sent": N_("If an account uses this phone number or email, we sent it a code."),
    "login_required": N_("Please log in to see this page."),
}


def _lang_links(
    request: Request, keep: dict[str, str] | None, at: str | None
) -> list[dict[str, str]]:
    # A page that answers a form POST switches language on the page's own GET address
    # (``at``: the POST address may have no page at all), carrying what the form held.
    posted = request.method != "GET"
    base = (at or "") if posted else ""
    kept = (keep or {}) if posted else {}
    links = []
    for code, label in (("zh-CN", "中文"), ("en", "English")):
        params = {**kept, **dict(request.query_params)}
        params["lang"] = code
        links.append({"code": code, "label": label, "href": base + "?" + urlencode(params)})
    return links


def page(
    request: Request,
    visitor: Visitor,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    *,
    keep: dict[str, str] | None = None,
    at: str | None = None,
) -> HTMLResponse:
    """Render a portal page with the visitor, CSRF tokens and language links.
    On a page answering a form POST, the language links go to ``at`` (the page's GET
    address; default: the same path) with the query values in ``keep``."""
    language: str = request.state.language
    flash_key = request.query_params.get("done", "")
    ctx: dict[str, Any] = {
        "account": visitor.account,
        "csrf": visitor.csrf,
        "anon_csrf": visitor.anon_csrf,
        "lang_links": _lang_links(request, keep, at),
        "languages": LANGUAGES,
        "flash": translate(language, FLASHES[flash_key]) if flash_key in FLASHES else None,
        "error": getattr(request.state, "form_error", None),
    }
    ctx.update(context or {})
    flashed = _flash_error(request, visitor)
    if flashed and not ctx.get("error"):  # why the action before the redirect was refused
        ctx["error"] = flashed
    posted = getattr(request.state, "form_values", None)
    if posted and isinstance(ctx.get("values"), dict):  # a refused form shown again
        ctx["values"] = {**ctx["values"], **posted}
    response = render(request, template, ctx, status_code=status_code)
    if flashed:
        response.delete_cookie(FLASH_COOKIE, **_cookie_kwargs(request.app.state.runtime))
    _finish(request, visitor, response)
    return response


def redirect(request: Request, visitor: Visitor, url: str) -> Response:
    """A 303 See Other (the answer to a form POST, or a guard)."""
    return _finish(request, visitor, RedirectResponse(url, status_code=303))


# ---------------------------------------------------------------- post/redirect/get

FLASH_COOKIE = "omv_flash"
FLASH_SECONDS = 120


def seal(secret_key: str, purpose: str, data: dict[str, Any]) -> str:
    """``data`` (JSON) with the time and a keyed digest: a cookie value only this server
    can have made, for ``purpose`` only."""
    body = base64.urlsafe_b64encode(
        json.dumps({"d": data, "at": int(clock.now().timestamp())}, ensure_ascii=False,
                   separators=(",", ":"), default=str).encode()
    ).decode().rstrip("=")
    return f"{body}.{keyed_digest(secret_key, f'portal-{purpose}:{body}')}"


def unseal(secret_key: str, purpose: str, value: str | None, max_age: int) -> dict[str, Any] | None:
    """What :func:`seal` sealed, if the value is untouched and younger than ``max_age``
    seconds; else None."""
    if not value or "." not in value or len(value) > 3000:
        return None
    body, _, _ = value.rpartition(".")
    if not same(value, f"{body}.{keyed_digest(secret_key, f'portal-{purpose}:{body}')}"):
        return None
    try:
        sealed = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        return None
    age = clock.now().timestamp() - int(sealed.get("at", 0))
    data = sealed.get("d")
    return data if isinstance(data, dict) and 0 <= age <= max_age else None


def set_sealed_cookie(
    response: Response, request: Request, name: str, purpose: str, data: dict[str, Any], *,
    max_age: int, path: str = "/",
) -> None:
    """A short-lived signed cookie holding ``data`` (see :func:`seal`)."""
    rt: Runtime = request.app.state.runtime
    response.set_cookie(name, seal(rt.secret_key, purpose, data), max_age=max_age,
                        **{**_cookie_kwargs(rt), "path": path})


def read_sealed_cookie(
    request: Request, name: str, purpose: str, *, max_age: int
) -> dict[str, Any] | None:
    rt: Runtime = request.app.state.runtime
    return unseal(rt.secret_key, purpose, request.cookies.get(name), max_age)


def redirect_with_error(
    request: Request, visitor: Visitor, url: str, exc: DomainError
) -> Response:
    """Post/redirect/get for a refused action whose form lives on another page: a 303 to
    ``url`` (a GET page), which then shows why (a short signed cookie for that path)."""
    response = redirect(request, visitor, url)
    terms = [k for k, v in exc.params.items() if isinstance(v, Term)]
    flash = {"to": urlsplit(url).path, "m": exc.message, "p": exc.params, "t": terms}
    set_sealed_cookie(response, request, FLASH_COOKIE, "flash", flash, max_age=FLASH_SECONDS)
    return response


def _flash_error(request: Request, visitor: Visitor) -> str | None:
    """The error a :func:`redirect_with_error` left for this page, in today's language."""
    if request.method != "GET":
        return None
    flash = read_sealed_cookie(request, FLASH_COOKIE, "flash", max_age=FLASH_SECONDS)
    if not flash or flash.get("to") != request.url.path or not isinstance(flash.get("m"), str):
        return None
    raw = flash.get("p")
    params: dict[str, Any] = raw if isinstance(raw, dict) else {}
    listed = flash.get("t")
    terms: list[Any] = listed if isinstance(listed, list) else []
    params = {k: Term(v) if k in terms and isinstance(v, str) else v for k, v in params.items()}
    try:
        return translate(request.state.language, flash["m"], **params)
    except (KeyError, IndexError, ValueError):
        return None


def safe_next(value: str | None, default: str = "/account") -> str:
    """Only a same-site relative path may be a redirect target."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(ch) < 32 for ch in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def login_redirect(request: Request, visitor: Visitor, back: str | None = None) -> Response:
    """To the login page, coming back afterwards to this page, or to ``back`` (the page
    holding a form whose POST address has no page of its own)."""
    target = back or request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = urlencode({"next": target, "done": "login_required"})
    return redirect(request, visitor, "/login?" + query)


def parse_uuid(raw: str) -> uuid.UUID | None:
    """An id from the URL; garbage is None (the caller answers "not found")."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def page_number(request: Request) -> int:
    """``?page=`` of a list: a positive number, anything else is the first page."""
    raw = request.query_params.get("page", "1")
    return max(1, int(raw)) if raw.isascii() and raw.isdigit() and len(raw) < 6 else 1


PRIVATE = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}
"""Headers of a download only its owner may see (receipt, eSIM QR code)."""


def error_page(
    request: Request, visitor: Visitor, status_code: int, title: str, message: str
) -> HTMLResponse:
    """A readable error page (403 CSRF, 404 not yours, ...) in the user's language."""
    return page(
        request, visitor, "error.html", {"title": title, "message": message},
        status_code=status_code,
    )


def not_found(request: Request, visitor: Visitor) -> HTMLResponse:
    lang = request.state.language
    return error_page(
        request, visitor, 404, translate(lang, "Not found"),
        translate(lang, "This page does not exist, or it belongs to another account."),
    )


# ---------------------------------------------------------------- forms


async def read_form(request: Request) -> dict[str, str]:
    """Text fields of a urlencoded/multipart form, stripped of surrounding spaces
    (except passwords)."""
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            out[key] = value if "password" in key else value.strip()
    return out


class AddressRefused(Exception):
    """A path or query value no page accepts (answered by :func:`install`'s handler)."""

    def __init__(self, visitor: Visitor, problem: forms.FormInvalid, status: int) -> None:
        super().__init__("address")
        self.visitor = visitor
        self.problem = problem
        self.status = status


class CsrfRejected(Exception):
    """A POST arrived without a valid CSRF token (answered by :func:`install`'s handler)."""

    def __init__(self, visitor: Visitor) -> None:
        super().__init__("csrf")
        self.visitor = visitor


async def checked_form(request: Request, visitor: Visitor, *, login: bool) -> dict[str, str]:
    """The posted form, once its CSRF token is checked (else :class:`CsrfRejected`) and
    every field is within the API's limits (else :class:`forms.FormInvalid`: the form's
    page again, with the reason)."""
    form, problem = forms.clean(await read_form(request))
    if problem is not None and problem.field == CSRF_FIELD:
        raise CsrfRejected(visitor)
    check_csrf(request, visitor, form, login=login)
    if problem is not None:
        problem.visitor = visitor
        raise problem
    return form


API_PREFIXES = ("/api/", "/webhooks/", "/sms/", "/ussd", "/healthz", "/readyz", "/openapi.json",
                "/docs")
"""Paths whose errors stay RFC 9457 problem details (machines read them)."""

_STATUS_TEXTS: dict[int, tuple[str, str]] = {
    400: (N_("This request could not be understood"),
          N_("Something in the address or the form was not valid. Go back and try again.")),
    401: (N_("Please log in"), N_("This page needs you to log in first.")),
    403: (N_("Not allowed"), N_("You are not allowed to open this page.")),
    404: (N_("Page not found"),
          N_("There is no page at this address. Check the address, or start again from the "
             "home page.")),
    405: (N_("This address cannot be opened like this"),
          N_("This address only takes a form sent from its page. Go back to the form and "
             "send it again.")),
    429: (N_("Too many requests"), N_("Too many requests; please wait and try again.")),
}
_SERVER_ERROR = (
    N_("Something went wrong on our side"),
    N_("Please try again in a moment. If it keeps happening, tell customer service this "
       "reference: {reference}."),
)
_OTHER_ERROR = (N_("The request failed"), N_("Please go back and try again."))


def wants_page(request: Request) -> bool:
    """Does this error go to a person (an HTML page) rather than a program (problem+json)?
    API paths always get problem details; elsewhere a client that asks for JSON only
    (``Accept: application/json`` without ``text/html``) gets them too."""
    if request.url.path.startswith(API_PREFIXES):
        return False
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept or "json" not in accept


async def _error_visitor(request: Request) -> Visitor:
    """Who sees an error page: the logged-in visitor when their session can be read
    (a short read-only transaction of its own), else an anonymous one. Never raises."""
    rt: Runtime = request.app.state.runtime
    try:
        async with unit_of_work(rt.sessions, readonly=True) as session:
            return await get_visitor(request, session, rt)
    except Exception:  # noqa: BLE001 - an error page must render even without a database
        return Visitor(None, False, "", "", False, rt.secret_key)


async def status_page(
    request: Request, status: int, *, message: str | None = None,
    headers: dict[str, str] | None = None, visitor: Visitor | None = None,
) -> Response:
    """The error page for an HTTP status on a portal path, in the visitor's language
    (``message``: a specific reason, already translated). A 5xx page needs no database."""
    lang = request.state.language
    if status >= 500:
        title, text = _SERVER_ERROR
        reference = str(getattr(request.state, "request_id", "") or "-")
        body = translate(lang, text, reference=reference)
        who = visitor or Visitor(None, False, "", "", False, request.app.state.runtime.secret_key)
    else:
        title, text = _STATUS_TEXTS.get(status, _OTHER_ERROR)
        body = message or translate(lang, text)
        who = visitor or await _error_visitor(request)
    try:
        response: Response = error_page(request, who, status, translate(lang, title), body)
    except Exception:  # the page itself failed: a bare one, never a stack trace
        log.exception("error page failed", extra={"path": request.url.path})
        response = HTMLResponse(
            f"<!doctype html><title>{status}</title><h1>{status}</h1><p><a href=\"/\">/</a></p>",
            status_code=status,
        )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


_Handler = Callable[[Request, Any], Awaitable[Response]]


def _install_error_pages(app: FastAPI) -> None:
    """Errors on portal paths are pages in the visitor's language; API paths keep the
    problem details handlers installed before (``problems.install``)."""
    api: dict[Any, _Handler] = dict(app.exception_handlers)

    async def to_api(request: Request, exc: Exception, kind: type[Exception]) -> Response:
        handler = api.get(kind)
        if handler is None:
            raise exc
        return await handler(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if not wants_page(request):
            return await to_api(request, exc, StarletteHTTPException)
        return await status_page(request, exc.status_code, headers=dict(exc.headers or {}))

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        if not wants_page(request):
            return await to_api(request, exc, DomainError)
        retry = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyAttempts) else None
        return await status_page(request, exc.status, message=describe(request, exc),
                                 headers=retry)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if not wants_page(request):
            return await to_api(request, exc, RequestValidationError)
        return await status_page(request, 400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if not wants_page(request):
            return await to_api(request, exc, Exception)
        log.exception("unhandled error", extra={"path": request.url.path})
        return await status_page(request, 500)


def install(app: FastAPI) -> None:
    """Portal-wide handlers: a refused CSRF token is a 403 page, never a 500; errors on
    portal paths (unknown address, 4xx, 5xx) are pages in the visitor's language."""
    _install_error_pages(app)

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, exc: CsrfRejected) -> Response:
        return csrf_rejected(request, exc.visitor)

    @app.exception_handler(AddressRefused)
    async def _address(request: Request, exc: AddressRefused) -> Response:
        if exc.status == 404:
            return not_found(request, exc.visitor)
        lang = request.state.language
        return error_page(
            request, exc.visitor, exc.status, translate(lang, "This address is not valid"),
            exc.problem.describe(lang),
        )

    @app.exception_handler(forms.FormInvalid)
    async def _invalid(request: Request, exc: forms.FormInvalid) -> Response:
        return await form_invalid(request, exc)


async def form_invalid(request: Request, exc: forms.FormInvalid) -> Response:
    """The form's own page again (its GET address, when that page needs nothing but the
    visitor) with the reason on it, as a 422; otherwise an error page with the reason."""
    language = request.state.language
    message = exc.describe(language)
    visitor: Visitor = exc.visitor
    request.state.form_error = message
    request.state.form_values = exc.values
    endpoint = _page_endpoint(request.app, request.url.path)
    if endpoint is not None:
        given = {"request": request, "visitor": visitor, "rt": request.app.state.runtime}
        wanted = inspect.signature(endpoint).parameters
        response: Response = await endpoint(**{k: v for k, v in given.items() if k in wanted})
        if response.status_code == 200 and isinstance(response, HTMLResponse):
            response.status_code = 422
            return response
    return error_page(
        request, visitor, 422, translate(language, "Please correct the form"), message
    )


def _page_endpoint(app: FastAPI, path: str) -> Any:
    """The GET handler of the page at ``path`` if it needs only the visitor (and runtime)."""
    for included in app.router.routes:
        router = getattr(included, "original_router", None)
        prefix = getattr(getattr(included, "include_context", None), "prefix", "")
        for route in getattr(router, "routes", [included]):
            if (
                isinstance(route, APIRoute)
                and "GET" in (route.methods or ())
                and prefix + route.path == path
            ):
                params = set(inspect.signature(route.endpoint).parameters)
                return route.endpoint if params <= {"request", "visitor", "rt"} else None
    return None


def check_csrf(request: Request, visitor: Visitor, form: dict[str, str], *, login: bool) -> None:
    """Forms behind a login carry the session token; anonymous ones the double-submit one."""
    sent = form.get(CSRF_FIELD, "")
    if login:
        ok = bool(visitor.csrf) and same(sent, visitor.csrf)
    else:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        ok = bool(sent) and same(sent, cookie) and _valid_anon(visitor.secret_key, cookie)
        if not ok and visitor.csrf:
            ok = same(sent, visitor.csrf)
    if not ok:
        raise CsrfRejected(visitor)


def csrf_rejected(request: Request, visitor: Visitor) -> HTMLResponse:
    lang = request.state.language
    return error_page(
        request, visitor, 403, translate(lang, "This form has expired"),
        translate(
            lang,
            "The form was not accepted because its security token is missing or out of date. "
            "Go back, reload the page and try again.",
        ),
    )


def describe(request: Request, exc: DomainError) -> str:
    """A service error in the reader's language."""
    return translate(request.state.language, exc.message, **exc.params)


async def attempt(session: AsyncSession, work: Awaitable[T]) -> T:
    """Run one service call in a savepoint: a DomainError undoes its changes unless it
    asks to keep them (a counted wrong code), so the page can still render and commit."""
    nested = await session.begin_nested()
    try:
        result = await work
    except DomainError as exc:
        if exc.keep_changes:
            await nested.commit()
        else:
            await nested.rollback()
        raise
    except BaseException:
        await nested.rollback()
        raise
    await nested.commit()
    return result
