"""Submitting the sandbox's hosted pay-page forms the way a browser does: with the hidden
CSRF token the page carries."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from openmvno.adapters.payments.sandbox_pages import csrf_token
from openmvno.runtime import Runtime

_HIDDEN = re.compile(r'type="hidden" name="([^"]+)" value="([^"]*)"')
_SANDBOX_POST = re.compile(r"^(?:https?://[^/]+)?/sandbox/pay/([^/?]+)/")


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def submit(
    client: httpx.AsyncClient, pay_url: str, step: str, data: dict[str, str] | None = None,
    *, page: str = "",
) -> httpx.Response:
    """Open the pay page (``pay_url`` + ``page``, e.g. ``/scan``), take the hidden fields of
    the form posting to ``step`` (``card``, ``3ds``, ``confirm``, ``decline``, ``transfer``)
    and post them with ``data``."""
    base = urlsplit(pay_url).path
    shown = await client.get(base + page)
    match = re.search(rf'action="{re.escape(base)}/{step}[^"]*"(.*?)</form>', shown.text, re.S)
    assert match is not None, f"no {step} form on {base + page}: {shown.status_code}"
    hidden = dict(_HIDDEN.findall(match.group(1)))
    return await client.post(f"{base}/{step}", data={**hidden, **(data or {})})


async def pay_by_card(
    client: httpx.AsyncClient, pay_url: str, number: str = "4242 4242 4242 4242"
) -> httpx.Response:
    """Pay on the hosted card page with a test card; the page sends the payer back (303)."""
    return await submit(
        client, pay_url, "card",
        {"card_number": number, "card_expiry": "12/39", "card_cvc": "123"},
    )


class SandboxBrowser(httpx.AsyncClient):
    """A client whose posts to a sandbox pay page carry that payment's CSRF token, as the
    page's own forms do (tests of the page logic post directly)."""

    def __init__(self, rt: Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rt = rt

    async def post(  # type: ignore[override]
        self, url: str, *, data: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        match = _SANDBOX_POST.match(str(url))
        if match and "csrf" not in (data or {}):
            data = {**(data or {}), "csrf": csrf_token(self._rt, match.group(1))}
        return await super().post(url, data=data, **kwargs)


__all__ = ["SandboxBrowser", "pay_by_card", "submit"]
