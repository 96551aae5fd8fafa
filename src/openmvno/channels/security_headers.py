"""Security headers on every response: a Content-Security-Policy with no inline script,
framing refused, no MIME sniffing, a same-origin Referer, and HSTS when cookies are secure.

The portal and the sandbox pay pages load only their own static files, so their policy is
strict (``script-src 'self'``, no ``'unsafe-inline'`` anywhere). Two exceptions, both narrow:

- The printable receipt (``receipts/templates/receipt.html``) is self-contained, with one
  ``<style>`` block; the policy allows exactly that block by its SHA-256 hash.
- The API docs (``/docs``, Swagger UI from the installed package, see ``web/apidocs``)
  load only this server's scripts like every page, but Swagger UI injects inline styles
  and shows images from ``data:`` URLs; ``/docs`` allows inline styles. Nothing of a
  subscriber's is ever rendered there.

``form-action`` also lists the public URL's origin (payment pages redirect to absolute
URLs built from it: Chrome applies ``form-action`` to the redirect after a POST). With the
Stripe provider it also allows any ``https:`` target, since a card or wallet payment
redirects, after the form's POST, to the provider's and then the bank's or wallet's pages.

A response that already carries a header of these keeps its own.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openmvno.config import Settings

DOCS_PATHS = ("/docs",)
_INLINE_STYLE = re.compile(r"<style[^>]*>(.*?)</style\s*>", re.DOTALL | re.IGNORECASE)
HSTS = "max-age=31536000"


def csp_hash(text: str) -> str:
    """A CSP source expression that allows exactly this inline script or style text."""
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return f"'sha256-{digest}'"


def _receipt_style_hashes() -> list[str]:
    """Hashes of the ``<style>`` blocks of the self-contained receipt template (literal
    CSS, rendered unchanged by Jinja)."""
    try:
        source = (
            resources.files("openmvno.receipts").joinpath("templates/receipt.html").read_text()
        )
    except (FileNotFoundError, ModuleNotFoundError):
        return []
    return [csp_hash(css) for css in _INLINE_STYLE.findall(source)]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _form_action(settings: Settings) -> str:
    sources = ["'self'"]
    public = _origin(settings.public_url)
    if public:
        sources.append(public)
    if settings.payment_provider == "stripe":
        sources.append("https:")
    return "form-action " + " ".join(sources)


def page_policy(settings: Settings) -> str:
    """The policy of every page but the API docs."""
    styles = " ".join(["'self'", *_receipt_style_hashes()])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            f"style-src {styles}",
            "img-src 'self' data:",
            "frame-ancestors 'none'",
            _form_action(settings),
            "base-uri 'none'",
            "object-src 'none'",
        ]
    )


def docs_policy(settings: Settings) -> str:
    """The API docs' policy: this server's scripts only; inline styles (Swagger UI's)."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "frame-ancestors 'none'",
            _form_action(settings),
            "base-uri 'none'",
            "object-src 'none'",
        ]
    )


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.policy = page_policy(settings)
        self.docs = docs_policy(settings)
        self.fixed: list[tuple[str, str]] = [
            ("x-frame-options", "DENY"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "same-origin"),
        ]
        if settings.secure_cookies:
            self.fixed.append(("strict-transport-security", HSTS))

    def _add(self, message: Message, policy: str) -> None:
        headers = MutableHeaders(scope=message)
        for name, value in [("content-security-policy", policy), *self.fixed]:
            if name not in headers:
                headers.append(name, value)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.docs if scope.get("path") in DOCS_PATHS else self.policy

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._add(message, policy)
            await send(message)

        await self.app(scope, receive, send_with_headers)
