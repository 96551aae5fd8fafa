"""A nesting limit on JSON request bodies, checked before anything parses them.

``json.loads`` and pydantic recurse once per level: a body of 1,000 nested arrays (a few
kilobytes, well under the size cap) can exhaust the interpreter's stack and leave as a
500. :class:`JsonDepthMiddleware` reads the body once (the size cap of
:class:`~openmvno.channels.middleware.RequestContextMiddleware`, mounted outside it, has
already bounded it), measures how deeply arrays and objects nest — strings are skipped,
so brackets inside them do not count — and answers a body nested deeper than
``max_depth`` with a 400 problem ``json_too_deep``; any other body is handed on
unchanged. Forms and multipart uploads are not JSON and are not looked at.
"""

from __future__ import annotations

import json
import re
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openmvno.i18n import N_, translate

MAX_DEPTH: Final = 32
"""No request body of ours nests more than a few levels; 32 leaves room for any client."""

_KEEP_QUOTES_AND_BRACKETS = bytes(b for b in range(256) if b not in b'"[]{}')
_INNERMOST = re.compile(rb"\[\]|\{\}")
_SKIPPED_TYPES = ("application/x-www-form-urlencoded", "multipart/")


def _brackets_outside_strings(body: bytes) -> bytes:
    """The ``[]{}`` of ``body`` that are not inside a JSON string, in order.

    Escapes first (if there is a backslash at all): each ``\\\\`` pair, left to right
    as JSON pairs a run of backslashes, then each ``\\"``; a backslash left escapes a
    letter and goes with everything but quotes and brackets. Then each two quotes side by
    side go (an empty string, or the end of one string and the start of the next: what
    lies between the quotes around them stays inside), and what remains alternates
    outside/inside at each quote. A few passes of C over the body, no regex over its
    strings (a 1.3 MB usage batch: ~5 ms, where matching every string took ~90)."""
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = body.translate(None, _KEEP_QUOTES_AND_BRACKETS).replace(b'""', b"")
    return b"".join(kept.split(b'"')[::2]) if b'"' in kept else kept


def json_depth_exceeds(body: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """True when arrays/objects in ``body`` nest deeper than ``max_depth`` (strings, with
    their escaped quotes, are ignored). Linear in the body: a few passes in C."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    brackets = _brackets_outside_strings(body)
    # Peel the innermost empty pairs ``[]``/``{}`` once per level: balanced brackets
    # nested at most ``max_depth`` deep are gone after that many peels.
    peeled = brackets
    for _ in range(max_depth):
        peeled = _INNERMOST.sub(b"", peeled)
        if not peeled:
            return False
    # Deeper, or unbalanced (invalid JSON, which the parser refuses): measure exactly.
    depth = 0
    for b in brackets:
        depth = depth + 1 if b in b"[{" else max(depth - 1, 0)
        if depth > max_depth:
            return True
    return False


class JsonDepthMiddleware:
    """Refuse request bodies whose JSON nests deeper than ``max_depth`` (400 problem)."""

    def __init__(self, app: ASGIApp, *, max_depth: int = MAX_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
        if content_type.lower().startswith(_SKIPPED_TYPES):
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # a disconnect (or the size cap's refusal): pass it on as it came
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if messages[-1]["type"] == "http.request" and json_depth_exceeds(
            b"".join(chunks), self.max_depth
        ):
            await self._too_deep(scope, send)
            return

        replay = iter(messages)

        async def replayed() -> Message:
            for message in replay:
                return message
            return await receive()

        await self.app(scope, replayed, send)

    async def _too_deep(self, scope: Scope, send: Send) -> None:
        language = scope.get("state", {}).get("language", "en")
        message = N_("The JSON body is nested too deeply (at most {max_depth} levels).")
        params = {"max_depth": self.max_depth}
        body = json.dumps(
            {
                "type": "https://openmvno.org/problems/json_too_deep",
                "title": translate("en", message, **params),
                "status": 400,
                "detail": translate(language, message, **params),
                "code": "json_too_deep",
                "instance": scope.get("path", ""),
            },
            ensure_ascii=False,
        ).encode("utf-8", "replace")
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
