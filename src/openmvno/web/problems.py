"""RFC 9457 problem details with a stable ``code`` and a localised ``detail``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from openmvno.errors import DomainError, TooManyAttempts
from openmvno.i18n import N_, from_accept_language, translate

log = logging.getLogger("openmvno.errors")
PROBLEM_JSON = "application/problem+json"

_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", N_("The request could not be understood.")),
    401: ("unauthorized", N_("Please log in.")),
    403: ("forbidden", N_("You are not allowed to do this.")),
    404: ("not_found", N_("Nothing was found at this address.")),
    405: ("method_not_allowed", N_("This method is not allowed here.")),
    413: ("body_too_large", N_("The request body is too large.")),
    415: ("unsupported_media_type", N_("Send the body as JSON.")),
    429: ("too_many_requests", N_("Too many requests; please wait and try again.")),
}


def request_language(request: Request) -> str:
    lang = getattr(request.state, "language", None)
    return lang or from_accept_language(request.headers.get("accept-language"))


def problem(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    params: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    lang = request_language(request)
    body: dict[str, Any] = {
        "type": f"https://openmvno.org/problems/{code}",
        "title": translate("en", message, **(params or {})),
        "status": status,
        "detail": translate(lang, message, **(params or {})),
        "code": code,
        "instance": printable(request.url.path, 300),
    }
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


MAX_FIELD_ERRORS = 20
"""A body of 10,000 bad array items is answered with the first 20 errors, not 10,000."""


def printable(value: object, limit: int = 64) -> str:
    """A caller's text made safe to echo: lone surrogates and control characters replaced,
    cut to ``limit`` characters (a 10,000-character unknown key is not sent back whole)."""
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors()[:MAX_FIELD_ERRORS]:
        where = err.get("loc", ())
        loc = [printable(p) for p in where if p not in ("body", "query", "path", "header")]
        out.append(
            {
                "field": ".".join(loc),
                "type": printable(err.get("type", "")),
                "message": printable(err.get("msg", ""), 300),
            }
        )
    return out


def install(app: FastAPI) -> None:
    """Register handlers so every error leaves as problem details, never a stack trace."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        headers = (
            {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyAttempts) else None
        )
        return problem(
            request, exc.status, exc.code, exc.message, params=exc.params, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(request, 400, "invalid_json", N_("The body is not valid JSON."))
        fields = ", ".join(dict.fromkeys(e["field"] or "body" for e in errors[:10]))
        return problem(
            request,
            422,
            "validation_failed",
            N_("Some fields are missing or invalid: {fields}."),
            params={"fields": fields},
            extra={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = _HTTP_CODES.get(exc.status_code, ("http_error", N_("The request failed.")))
        return problem(
            request, exc.status_code, code, message, headers=dict(exc.headers or {})
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem(request, 500, "internal_error", N_("Something went wrong on our side."))
