"""The browser harness itself works: Debian Chromium + Playwright + a real server."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect


@pytest.mark.browser
def test_landing_page_in_a_real_browser(page: Page) -> None:
    page.goto("/?lang=en")
    expect(page.locator("[data-test=landing]")).to_be_visible()
    expect(page.locator("[data-test=landing-plans]")).to_have_attribute("href", "/plans")
