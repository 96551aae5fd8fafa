"""Portal polish in headless Chromium on a phone (390×844): nothing scrolls sideways,
balances are one bar per kind with the details folded, the receipt page is styled."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from tests.browser_fixtures import OwnedLine, PortalServer
from tests.portal.test_browser import log_in, register_and_verify, t
from tests.portal.test_shop_browser import pay_by_card

pytestmark = pytest.mark.browser

PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844}, "device_scale_factor": 3,
    "is_mobile": True, "has_touch": True,
}
WIDER_THAN_THE_SCREEN = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(0, 3).map(e => e.tagName.toLowerCase() + ': ' + (e.textContent || '').trim().slice(0, 40))"""


@pytest.fixture
def phone_context(browser: Browser, base_url: str) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=base_url, **PHONE)
    try:
        yield context
    finally:
        context.close()


def bought(
    page: Page, server: PortalServer, phone: str, lang: str, days: int = 10
) -> OwnedLine:
    """A subscriber with a line (``days`` left), who renews it by card: left on the
    sandbox's card page."""
    register_and_verify(page, server, phone, lang=lang)
    log_in(page, phone)
    line = server.give_esim("+86" + phone, "BT-MIX-59", days=days)
    page.goto(f"/buy?plan=BT-MIX-59&line={line.id}&lang={lang}")
    page.check(t("method-card"))
    page.click(t("pay"))
    expect(page).to_have_url(re.compile(r"/sandbox/pay/sbx_"))
    return line


def test_no_main_page_scrolls_sideways_on_a_phone(
    phone_context: BrowserContext, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    page = phone_context.new_page()
    wide: dict[str, Any] = {}

    def check(label: str) -> None:
        width: int = page.evaluate("document.documentElement.scrollWidth")
        if width > 390:
            wide[label] = (width, page.evaluate(WIDER_THAN_THE_SCREEN))

    for lang in ("en", "zh-CN"):
        for path in ("/", "/login", "/register", "/plans", "/topup", "/password/forgot",
                     "/no-such-page"):
            page.goto(f"{path}?lang={lang}")
            check(f"{path} {lang}")
    phone = new_phone()
    line = bought(page, portal_server, phone, "en")
    check("sandbox card page en")
    page.goto(page.url.split("?")[0] + "?lang=zh-CN")
    check("sandbox card page zh-CN")
    pay_by_card(page, "4242 4242 4242 4242")
    check("order result")
    page.click(t("receipt-link"))
    expect(page.locator("main.receipt")).to_be_visible()
    check("receipt")
    for lang in ("en", "zh-CN"):
        for path in ("/account", "/orders", "/receipts", "/wallet/topup", "/devices/bind",
                     f"/lines/{line.id}/esim", f"/buy?plan=BT-DATA-30&line={line.id}",
                     "/plans?kind=addon"):
            page.goto(f"{path}{'&' if '?' in path else '?'}lang={lang}")
            check(f"{path} {lang}")
    # A guest's top-up of that number: the number, the confirm step, the result.
    page.context.clear_cookies()
    page.goto("/topup?lang=en")
    page.fill(t("msisdn"), line.msisdn)
    page.click(t("lookup"))
    expect(page).to_have_url(re.compile(r"/topup/confirm$"))
    check("guest confirm")
    page.fill(t("amount"), "20,50")
    page.click(t("pay"))
    pay_by_card(page, "4242 4242 4242 4242")
    expect(page.locator(t("credited"))).to_contain_text("20.50")
    check("guest result")
    assert wide == {}, f"these pages scroll sideways on a phone: {wide}"


def test_balances_fold_and_the_receipt_page_is_styled_on_a_phone(
    phone_context: BrowserContext, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    page = phone_context.new_page()
    refused: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("console", on_console)
    line = bought(page, portal_server, new_phone(), "zh-CN", days=0)  # starts at once
    pay_by_card(page, "4242 4242 4242 4242")
    page.click(t("receipt-link"))
    receipt = page.locator("main.receipt")
    expect(receipt).to_have_css("background-color", "rgb(255, 255, 255)")
    expect(receipt).to_have_css("border-top-style", "solid")
    back = page.locator(t("back-link")).first
    expect(back).to_have_text("← 我的收据")
    back.click()
    expect(page).to_have_url(re.compile(r"/receipts$"))

    page.goto("/account?lang=zh-CN")
    card = page.locator(f"[data-line-id='{line.id}']")
    totals = card.locator(t("total"))
    expect(totals).to_have_count(3)
    for kind in ("data", "voice", "sms"):
        expect(card.locator(f"{t('total')}[data-kind={kind}] {t('total-bar')}")).to_be_visible()
    expect(card.locator(f"{t('total')}[data-kind=data] {t('total-left')}")).to_have_text("20 GB")
    expect(card.locator(t("bucket")).first).to_be_hidden()  # folded
    card.locator(f"{t('balance-details')} summary").click()
    expect(card.locator(t("bucket")).first).to_be_visible()
    assert refused == []
