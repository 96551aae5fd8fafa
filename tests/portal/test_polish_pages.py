"""Portal polish over plain HTTP: error pages in the visitor's language, order history
with receipts and top-ups from others, balances folded per kind, the wallet at checkout,
texts, decimal commas and post/redirect/get."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from openmvno.app import create_app
from openmvno.runtime import Runtime
from tests.portal.helpers import portal_login, register_verified, text_of


@pytest.fixture
async def app_client(rt: Runtime) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A client whose app raises nothing through to the test (5xx pages are answered)."""
    app = create_app(runtime=rt)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield app, c


# ---------------------------------------------------------------- error pages


@pytest.mark.parametrize(
    ("lang", "title", "message"),
    [
        ("zh-CN", "页面不存在", "此网址没有对应的页面。"),
        ("en", "Page not found", "There is no page at this address."),
    ],
)
async def test_an_unknown_address_is_a_page_in_the_visitors_language_with_a_link_home(
    client: httpx.AsyncClient, lang: str, title: str, message: str
) -> None:
    r = await client.get("/no-such-page", headers={"Accept-Language": lang})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert f'<h1 data-test="error-title">{title}</h1>' in r.text
    assert message in text_of(r.text)
    assert '<a href="/">' in r.text
    assert f'<html lang="{lang}">' in r.text


async def test_api_and_webhook_addresses_keep_problem_details(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/no-such-thing", "/webhooks/sandbox/nothing/here"):
        r = await client.get(path, headers={"Accept": "text/html", "Accept-Language": "zh-CN"})
        assert r.headers["content-type"].startswith("application/problem+json"), path
        assert r.json()["status"] in (404, 405)
    # A program asking a portal address for JSON only gets problem details too.
    r = await client.get("/no-such-page", headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_a_post_only_address_opened_in_the_browser_is_a_page(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/topup/pay?lang=en")
    assert r.status_code == 405 and r.headers["content-type"].startswith("text/html")
    assert "This address only takes a form sent from its page" in text_of(r.text)
    assert "allow" in r.headers


async def test_a_logged_in_visitor_keeps_their_menu_on_the_not_found_page(
    client: httpx.AsyncClient,
) -> None:
    await register_verified(client, phone="13800138901")
    await portal_login(client, "13800138901")
    r = await client.get("/nowhere?lang=en")
    assert r.status_code == 404
    assert 'data-test="nav-account"' in r.text and 'data-test="logout"' in r.text


async def test_an_unexpected_error_on_a_portal_page_is_a_page_with_a_reference(
    app_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = app_client

    async def boom() -> None:
        raise RuntimeError("kaput")

    app.add_api_route("/boom", boom)
    app.add_api_route("/api/v1/boom", boom)
    r = await client.get("/boom", headers={"Accept-Language": "zh-CN", "X-Request-ID": "req-42"})
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    assert "我们这边出了点问题" in r.text and "req-42" in text_of(r.text)
    assert "kaput" not in r.text and "Traceback" not in r.text
    api = await client.get("/api/v1/boom")
    assert api.status_code == 500 and api.json()["code"] == "internal_error"
