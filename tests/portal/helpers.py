"""Small helpers for driving the portal over plain HTTP (no browser)."""

from __future__ import annotations

import html
import re

import httpx

from tests.conftest import last_code

CSRF = re.compile(r'name="csrf" value="([^"]*)"')
PASSWORD = "Spring-2026"


def csrf_of(page: str) -> str:
    """The first CSRF token on a page."""
    match = CSRF.search(page)
    assert match, "no csrf field on the page"
    return html.unescape(match.group(1))


def text_of(page: str) -> str:
    """Visible-ish text: tags stripped, entities decoded, whitespace squeezed."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


async def post_form(
    client: httpx.AsyncClient, get_url: str, post_url: str, data: dict[str, str]
) -> httpx.Response:
    """GET the page holding the form (for its CSRF token), then POST the form."""
    page = await client.get(get_url)
    return await client.post(post_url, data={"csrf": csrf_of(page.text), **data})


async def register_verified(
    client: httpx.AsyncClient, *, phone: str, name: str = "Li Lei", email: str = ""
) -> None:
    """Register and verify through the portal forms."""
    r = await post_form(
        client, "/register", "/register",
        {"name": name, "phone": phone, "email": email, "password": PASSWORD,
         "language": "en", "code_channel": "sms"},
    )
    assert r.status_code == 303, r.text
    code = await last_code(client, phone if phone.startswith("+") else "+86" + phone)
    r = await post_form(client, r.headers["location"], "/verify", {"login": phone, "code": code})
    assert r.status_code == 303, r.text


async def portal_login(client: httpx.AsyncClient, login: str, password: str = PASSWORD) -> None:
    r = await post_form(client, "/login", "/login", {"login": login, "password": password})
    assert r.status_code == 303, r.text
