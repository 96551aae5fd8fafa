"""ASGI middleware: request id, one structured log line per request, body size cap,
and the request language (``?lang=``, ``lang`` cookie, ``Accept-Language``).

The log line's ``client`` is the address in the ASGI scope: the socket peer, or the one a
trusted proxy named (``OPENMVNO_TRUSTED_PROXIES``, applied outside this middleware)."""

from __future__ import annotations

import html
import json
import logging
import re
import time
import uuid
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openmvno.i18n import N_, from_accept_language, normalize_language, translate

log = logging.getLogger("openmvno.http")
_PAGE_TOO_LARGE = (
    '<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>'
    '</head><body><main><h1>{title}</h1><p>{detail}</p><p><a href="{back_to}">{back}</a></p>'
    "</main></body></html>"
)
_LINK_TOKEN = re.compile(r"^(/api/v1/guest/orders/|/topup/orders/)[^/]+")


def redact_path(path: str | None) -> str | None:
    """The path as logged: a guest order's link token (a secret in the path) is hidden."""
    return _LINK_TOKEN.sub(r"\1***", path) if path else path


def _language(scope: Scope, headers: dict[bytes, bytes], default: str) -> str:
    q = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("lang")
    if q:
        return normalize_language(q[0], default)
    cookie = headers.get(b"cookie")
    if cookie:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie.decode("latin-1"))
        except Exception:  # noqa: BLE001 - a malformed cookie header must not break the request
            jar = SimpleCookie()
        if "lang" in jar:
            return normalize_language(jar["lang"].value, default)
    accept = headers.get(b"accept-language")
    return from_accept_language(accept.decode("latin-1") if accept else None, default)


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body: int, default_language: str,
        large_bodies: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.default_language = default_language
        self.large_bodies = large_bodies or {}
        """Paths allowed a larger body than ``max_body`` (a batch of usage records)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        language = _language(scope, headers, self.default_language)
        scope.setdefault("state", {})
        scope["state"]["request_id"] = request_id
        scope["state"]["language"] = language
        started = time.perf_counter()
        status = 500
        response_started = False

        max_body = self.large_bodies.get(scope.get("path", ""), self.max_body)
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            await self._too_large(send, request_id, language, scope)
            self._log(scope, 413, started, request_id)
            return

        seen = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal seen, refused, status
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_body and not refused:
                    # Answer 413 now; whatever the app sends afterwards is dropped.
                    refused, status = True, 413
                    if not response_started:
                        await self._too_large(send, request_id, language, scope)
                    return {"type": "http.disconnect"}
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if refused:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except Exception:
            if not refused:
                raise
        finally:
            self._log(scope, status, started, request_id)

    async def _too_large(self, send: Send, request_id: str, language: str, scope: Scope) -> None:
        message = N_("The request body is too large.")
        content_type = b"application/problem+json"
        path = str(scope.get("path", ""))
        if path.startswith(("/api/", "/webhooks/")):
            body = json.dumps(
                {
                    "type": "https://openmvno.org/problems/body_too_large",
                    "title": message,
                    "status": 413,
                    "detail": translate(language, message),
                    "code": "body_too_large",
                },
                ensure_ascii=False,
            ).encode()
        else:  # a portal form: a page a person can read, in their language
            content_type = b"text/html; charset=utf-8"
            body = _PAGE_TOO_LARGE.format(
                lang=html.escape(language),
                title=html.escape(translate(language, N_("This form is too large"))),
                detail=html.escape(
                    translate(
                        language,
                        N_("What you typed is far longer than any field allows; shorten it "
                           "and try again."),
                    )
                ),
                back=html.escape(translate(language, N_("Back to the form"))),
                back_to=html.escape(path, quote=True),
            ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _log(scope: Scope, status: int, started: float, request_id: str) -> None:
        client = scope.get("client")
        extra: dict[str, Any] = {
            "request_id": request_id,
            "client": client[0] if client else None,
            "method": scope.get("method"),
            "path": redact_path(scope.get("path")),  # never the query string: it may carry tokens
            "status": status,
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }
        log.info("request", extra=extra)
