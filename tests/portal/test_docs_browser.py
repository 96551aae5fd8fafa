"""The API docs render in a real browser from this server's own files: no CDN (the
machine running the suite has no internet), no CSP violation."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Request, expect


@pytest.mark.browser
def test_swagger_ui_renders_offline_under_the_strict_script_policy(
    page: Page, base_url: str
) -> None:
    errors: list[str] = []
    foreign: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    def note(request: Request) -> None:
        if not request.url.startswith(base_url):
            foreign.append(request.url)

    page.on("request", note)
    page.goto("/docs")
    # The operation list comes from /openapi.json, so it shows only once Swagger UI runs;
    # it renders every route of a large document first (slow on a loaded machine).
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/plans").first).to_be_visible(
        timeout=60_000
    )
    assert foreign == []
    assert [e for e in errors if "Content Security Policy" in e] == []


