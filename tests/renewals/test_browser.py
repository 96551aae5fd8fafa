"""In headless Chromium against a real ``openmvno serve``: save a sandbox card on the
provider's hosted page, turn auto-renew on with it, and see the next renewal date."""

from __future__ import annotations

import re
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from tests.browser_fixtures import PortalServer
from tests.portal.test_browser import log_in, register_and_verify

pytestmark = pytest.mark.browser


def t(sel: str) -> str:
    return f"[data-test={sel}]"


def test_turn_auto_renew_on_with_a_saved_card_and_see_the_next_renewal(
    page: Page, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    register_and_verify(page, portal_server, phone, lang="en")
    log_in(page, phone)
    line = portal_server.give_esim("+86" + phone, "BT-MIX-59", days=10)
    assert line.expires_at is not None

    page.goto("/account?lang=en")
    card = page.locator(f"[data-line-id='{line.id}']")
    expect(card.locator(t("auto-renew-link"))).to_have_text("Auto-renew: Off")
    card.locator(t("auto-renew-link")).click()
    expect(page.locator(t("auto-renew-state"))).to_have_text("Off")
    expect(page.locator(t("no-cards"))).to_be_visible()

    # Save a card on the sandbox's hosted page, then come back.
    page.click(t("manage-cards"))
    page.click(t("add-card"))
    expect(page).to_have_url(re.compile(r"/sandbox/setup/"))
    page.fill(t("card-number"), "4242 4242 4242 4242")
    page.fill(t("card-expiry"), "12/39")
    page.fill(t("card-cvc"), "123")
    page.click(t("save-card"))
    expect(page).to_have_url(re.compile(r"/account/cards\?done=card_saved"))

    page.goto(f"/lines/{line.id}/auto-renew")
    page.check(t("auto-renew-enabled"))
    choice = page.locator(t("funding-card"))
    expect(choice).to_have_count(1)
    expect(page.locator(t("funding"))).to_contain_text("card ending in 4242")
    choice.check()
    page.check(t("auto-renew-fallback"))
    page.click(t("auto-renew-save"))

    expect(page).to_have_url(re.compile(rf"/lines/{line.id}/auto-renew\?done=auto_renew_on"))
    expect(page.locator(t("flash"))).to_have_text("Auto-renew is on for this line.")
    expect(page.locator(t("auto-renew-state"))).to_have_text("On")
    local = line.expires_at.astimezone(ZoneInfo("Asia/Shanghai"))
    expect(page.locator(t("next-renewal"))).to_have_text(local.strftime("%Y-%m-%d %H:%M"))
    expect(page.locator(t("auto-renew-amount"))).to_have_text("CN¥59.00")
    expect(page.locator(t("auto-renew-funding"))).to_contain_text("card ending in 4242")
    expect(page.locator(t("auto-renew-funding"))).to_contain_text("then the wallet")

    page.goto("/account?lang=zh-CN")
    expect(card.locator(t("auto-renew-link"))).to_have_text("自动续费： 已开启")
    card.locator(t("auto-renew-link")).click()
    expect(page.locator(t("auto-renew-state"))).to_have_text("已开启")
    expect(page.locator(t("next-renewal"))).to_have_text(local.strftime("%Y-%m-%d %H:%M"))
