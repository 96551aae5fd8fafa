"""In Chromium: save a sandbox card from the portal's "Payment cards" page (the hosted
"save a card" page in between), see it listed as the default; the pages fit a phone."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Browser, expect

from tests.browser_fixtures import PortalServer
from tests.portal.test_browser import log_in, register_and_verify, t


def test_save_a_sandbox_card_and_see_it_listed(
    browser: Browser, base_url: str, portal_server: PortalServer,
    new_phone: Callable[[], str],
) -> None:
    phone_size: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "is_mobile": True}
    context = browser.new_context(base_url=base_url, **phone_size)
    try:
        page = context.new_page()
        phone = new_phone()
        register_and_verify(page, portal_server, phone)
        log_in(page, phone)
        page.click(t("cards-link"))
        expect(page).to_have_url(re.compile(r"/account/cards$"))
        expect(page.locator(t("no-cards"))).to_be_visible()
        page.click(t("add-card"))
        expect(page).to_have_url(re.compile(r"/sandbox/setup/sbs_[0-9a-f]{24}"))
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.fill(t("card-number"), "4242 4242 4242 4242")
        page.fill(t("card-expiry"), "12/39")
        page.fill(t("card-cvc"), "123")
        page.click(t("save-card"))
        expect(page).to_have_url(re.compile(r"/account/cards\?done=card_saved$"))
        expect(page.locator(t("flash"))).to_have_text("Your card is saved.")
        card = page.locator(t("saved-card"))
        expect(card).to_have_count(1)
        expect(card).to_contain_text("Visa card ending in 4242")
        expect(card.locator(t("card-default"))).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert "4242 4242 4242 4242" not in page.content()
    finally:
        context.close()
