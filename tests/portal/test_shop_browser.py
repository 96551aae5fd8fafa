"""Buying, renewing and topping up in headless Chromium against a real ``openmvno serve``,
paying on the sandbox provider's hosted pages. No webhook worker runs: the result page
settles the payment by asking the provider, so the outcome shows at once."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts import service as accounts
from openmvno.accounts.identity import mask_name
from openmvno.formatting import Formatter
from openmvno.ledger import service as ledger
from openmvno.runtime import Runtime
from tests.browser_fixtures import OwnedLine, PortalServer
from tests.portal.test_browser import log_in, register_and_verify

pytestmark = pytest.mark.browser

DEMO_LINE = "17020200900"  # the demo subscriber's eSIM (openmvno.demo)
DEMO_LOGIN = "+8613800000000"


def t(sel: str) -> str:
    return f"[data-test={sel}]"


def pay_by_card(page: Page, number: str) -> None:
    """On the sandbox's hosted card page."""
    expect(page).to_have_url(re.compile(r"/sandbox/pay/sbx_"))
    page.fill(t("card-number"), number)
    page.fill(t("card-expiry"), "12/39")
    page.fill(t("card-cvc"), "123")
    page.click(t("pay"))
    # Back to the order's result page: by id for a subscriber, through its link for a guest.
    expect(page).to_have_url(
        re.compile(r"(/orders/[0-9a-f-]{36}/result|/topup/orders/[\w-]{43})\?attempt=")
    )


def wallet_of(server: PortalServer, login: str) -> int:
    async def work(session: AsyncSession, rt: Runtime) -> int:
        account = await accounts.get_by_login(session, rt, login)
        assert account is not None
        return (await ledger.wallet(session, account_id=account.id, currency="CNY")).remaining

    return server.run(work)


def subscriber_with_line(
    page: Page, server: PortalServer, phone: str, *, lang: str, days: int = 10
) -> OwnedLine:
    register_and_verify(page, server, phone, lang=lang)
    log_in(page, phone)
    return server.give_esim("+86" + phone, "BT-MIX-59", days=days)


def test_renew_with_the_good_card_shows_new_expiry_and_balances_at_once(
    page: Page, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    line = subscriber_with_line(page, portal_server, phone, lang="en")
    assert line.expires_at is not None
    page.goto("/account?lang=en")
    card = page.locator(f"[data-line-id='{line.id}']")
    card.locator(t("renew")).click()

    summary = page.locator(t("summary"))
    expect(summary.locator(t("order-what"))).to_have_text("Plan renewal: All-in 20 GB")
    expect(summary.locator(t("order-price"))).to_have_text("CN¥59.00")
    expect(summary).to_contain_text("30 days")
    expect(summary).to_contain_text("300 min")
    expect(summary.locator(t("plan-terms"))).to_have_text("Domestic calls.")
    expect(page.locator(t("method-wallet"))).to_be_visible()
    page.check(t("method-card"))
    page.click(t("pay"))

    pay_by_card(page, "4242 4242 4242 4242")
    fmt = Formatter("en")
    expect(page.locator(t("order-state"))).to_have_text("Completed")
    expect(page.locator(t("new-plan"))).to_have_text("All-in 20 GB")
    expect(page.locator(t("new-expiry"))).to_have_text(
        fmt.date(line.expires_at + timedelta(days=30))
    )
    expect(page.locator(t("old-expiry"))).to_have_text(fmt.date(line.expires_at))
    left = page.locator(f"{t('bucket')}[data-kind=data] {t('bucket-left')}")
    expect(left).to_have_text("20 GB of 20 GB")
    expect(page.locator(f"{t('bucket')}[data-kind=voice] {t('bucket-left')}")).to_have_text(
        "300 min of 300 min"
    )
    expect(page.locator(f"{t('bucket')}[data-kind=sms] {t('bucket-left')}")).to_have_text(
        "100 SMS of 100 SMS"
    )
    expect(page.locator(t("receipt-link"))).to_be_visible()

    # The account page agrees, and the history lists the renewal once.
    page.click(t("back-account"))
    expect(card.locator(t("line-expiry"))).to_have_text(
        fmt.date(line.expires_at + timedelta(days=30))
    )
    page.click(t("nav-orders"))
    expect(page.locator(t("order-row"))).to_have_count(1)
    expect(page.locator(t("order-state"))).to_have_text("Completed")


def test_declined_card_then_alipay_pays_the_same_order(
    page: Page, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    line = subscriber_with_line(page, portal_server, phone, lang="zh-CN")
    page.goto(f"/buy?plan=BT-DATA-30&line={line.id}&lang=zh-CN")
    page.check(t("method-card"))
    page.click(t("pay"))
    pay_by_card(page, "4000 0000 0000 0002")
    order_url = page.url.split("?")[0]
    expect(page.locator(t("order-state"))).to_have_text("待付款")
    expect(page.locator(t("failure"))).to_have_text("银行拒绝了本次支付，请换一种支付方式。")

    page.check(t("method-alipay"))
    page.click(t("retry-pay"))
    expect(page).to_have_url(re.compile(r"/sandbox/pay/sbx_"))
    page.click(t("confirm-scan"))
    expect(page).to_have_url(re.compile(re.escape(order_url) + r"\?attempt="))
    expect(page.locator(t("order-state"))).to_have_text("已完成")
    expect(page.locator(t("failure"))).to_have_count(0)
    assert line.expires_at is not None
    expect(page.locator(t("new-expiry"))).to_have_text(
        Formatter("zh-CN").date(line.expires_at + timedelta(days=30))
    )
    page.goto("/orders")
    expect(page.locator(t("order-row"))).to_have_count(1)


def test_guest_tops_up_the_demo_number_without_logging_in(
    page: Page, portal_server: PortalServer
) -> None:
    before = wallet_of(portal_server, DEMO_LOGIN)
    page.goto("/?lang=zh-CN")
    page.click(t("nav-topup"))
    page.fill(t("msisdn"), DEMO_LINE)
    page.click(t("lookup"))
    expect(page.locator(t("owner"))).to_have_text(mask_name("演示用户"))
    expect(page.locator(t("masked-msisdn"))).not_to_contain_text(DEMO_LINE)
    expect(page.locator(t("method-wallet"))).to_have_count(0)
    page.fill(t("amount"), "25.5")
    page.check(t("method-card"))
    page.click(t("pay"))
    pay_by_card(page, "4242424242424242")
    expect(page.locator(t("order-state"))).to_have_text("已完成")
    expect(page.locator(t("credited"))).to_contain_text("¥25.50")
    expect(page.locator(t("nav-login"))).to_be_visible()  # still a guest
    assert wallet_of(portal_server, DEMO_LOGIN) == before + 2550


def test_receipt_pdf_and_html_in_chinese(
    page: Page, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    line = subscriber_with_line(page, portal_server, phone, lang="zh-CN")
    page.goto(f"/buy?plan=BT-DATA-30&line={line.id}&lang=zh-CN")
    page.check(t("method-card"))
    page.click(t("pay"))
    pay_by_card(page, "5555 5555 5555 4444")
    expect(page.locator(t("order-state"))).to_have_text("已完成")

    pdf_href = page.locator(t("receipt-pdf")).get_attribute("href")
    assert pdf_href is not None and pdf_href.endswith(".pdf")
    response = page.request.get(pdf_href)
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.body().startswith(b"%PDF")

    page.goto("/receipts?lang=zh-CN")
    expect(page.locator(t("receipt-row"))).to_have_count(1)
    expect(page.locator(t("receipt-row"))).to_contain_text("畅游 10GB 月包")
    page.click(t("receipt-link"))
    expect(page.locator("h1")).to_contain_text("收据")
    body = page.locator("body")
    expect(body).to_contain_text("收据编号")
    expect(body).to_contain_text("支付方式")
    expect(body).to_contain_text("银行卡")
    expect(body).to_contain_text("¥30.00")

    # Someone else gets "not found" for the same receipt.
    receipt_url = page.url
    page.context.clear_cookies()
    other = new_phone()
    register_and_verify(page, portal_server, other, lang="zh-CN", name="韩梅梅")
    log_in(page, other)
    response = page.request.get(receipt_url)
    assert response.status == 404
    response = page.request.get(receipt_url.split("?")[0] + ".pdf")
    assert response.status == 404 and not response.body().startswith(b"%PDF")
    assert uuid.UUID(receipt_url.split("/receipts/")[1].split("?")[0])
