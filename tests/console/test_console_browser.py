"""The console in headless Chromium against a real ``openmvno serve --demo``: an agent
finds the demo caller by the device serial of their data card, verifies them with the code
read from the SMS in the dev outbox, sends a payment link by SMS; the caller pays it on
their phone in a second browser context; the agent's page shows it paid. The admin's
dashboard in zh-CN and en at 390 px: seven charts, none broken, nothing scrolls sideways
(screenshots kept under the test's tmp directory)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts import service as accounts
from openmvno.accounts.models import Role
from openmvno.lines.models import Line
from openmvno.runtime import Runtime
from tests.portal.conftest import PortalServer

pytestmark = pytest.mark.browser
DEMO_LOGIN = "+8613800000000"
STAFF_PASSWORD = "Console-staff-2026"


def t(sel: str) -> str:
    return f"[data-test={sel}]"


def make_staff(server: PortalServer, role: Role) -> str:
    email = f"{role.value}-{uuid.uuid4().hex[:8]}@op.example"

    async def work(session: AsyncSession, rt: Runtime) -> None:
        await accounts.create_staff(session, rt, name=f"Browser {role.value}", email=email,
                                    password=STAFF_PASSWORD, role=role)

    server.run(work)
    return email


def demo_serial(server: PortalServer) -> str:
    async def work(session: AsyncSession, rt: Runtime) -> str:
        account = await accounts.get_by_login(session, rt, DEMO_LOGIN)
        assert account is not None
        serial = await session.scalar(select(Line.device_serial).where(
            Line.account_id == account.id, Line.device_serial.is_not(None)))
        assert serial
        return str(serial)

    return server.run(work)


def console_log_in(page: Page, email: str, lang: str = "zh-CN") -> None:
    page.goto(f"/console/login?lang={lang}")
    page.fill(t("login"), email)
    page.fill(t("password"), STAFF_PASSWORD)
    page.click(t("submit"))
    expect(page).to_have_url(re.compile(r"/console$"))


def outbox_link(server: PortalServer, recipient: str) -> str:
    r = httpx.get(f"{server.base_url}/dev/outbox", headers={"Accept": "application/json"},
                  timeout=10)
    for m in r.json()["messages"]:
        found = re.search(r"https?://\S+/topup/orders/[\w-]+", m["body"])
        if m["recipient"] == recipient and found:
            return found.group(0)
    raise AssertionError("no payment link sent")


def test_agent_verifies_by_sms_code_and_the_caller_pays_the_link(
    page: Page, browser: Browser, portal_server: PortalServer
) -> None:
    server = portal_server
    serial = demo_serial(server)
    console_log_in(page, make_staff(server, Role.agent))
    page.fill(t("search"), serial.lower())
    page.click(t("search-submit"))
    expect(page.locator(t("results"))).to_contain_text("演**户")
    expect(page.locator(t("results"))).not_to_contain_text(DEMO_LOGIN)
    page.click(t("open-account"))
    expect(page.locator(t("not-verified"))).to_be_visible()
    expect(page.locator(t("link-form"))).to_have_count(0)  # nothing to do until verified
    page.click(t("send-sms-code"))
    expect(page.locator(t("flash"))).to_be_visible()
    page.fill(t("caller-code"), server.last_code(DEMO_LOGIN))
    page.click(t("check-code"))
    expect(page.locator(t("verified"))).to_be_visible()
    page.select_option(t("link-plan"), "BT-DATA-30")
    page.click(t("send-link"))
    expect(page.locator(t("order-state"))).to_have_text("待付款")
    expect(page.locator(t("refreshing"))).to_be_visible()

    # The caller, on their phone: the link from the SMS, paid by card (no login).
    phone = browser.new_context(base_url=server.base_url, viewport={"width": 390, "height": 844})
    try:
        theirs = phone.new_page()
        theirs.goto(outbox_link(server, DEMO_LOGIN))
        theirs.check(t("method-card"))
        theirs.click(t("retry-pay"))
        expect(theirs).to_have_url(re.compile(r"/sandbox/pay/sbx_"))
        theirs.fill(t("card-number"), "4242424242424242")
        theirs.fill(t("card-expiry"), "12/39")
        theirs.fill(t("card-cvc"), "123")
        theirs.click(t("pay"))
        expect(theirs).to_have_url(re.compile(r"/topup/orders/[\w-]{43}\?attempt="))
        expect(theirs.locator(t("order-state"))).to_have_text(re.compile("已完成|Completed"))
    finally:
        phone.close()
    page.reload()
    expect(page.locator(t("order-state"))).to_have_text("已支付")
    expect(page.locator(t("refreshing"))).to_have_count(0)


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_dashboard_charts_on_a_phone(browser: Browser, portal_server: PortalServer,
                                     tmp_path: Path, lang: str) -> None:
    context = browser.new_context(base_url=portal_server.base_url,
                                  viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        console_log_in(page, make_staff(portal_server, Role.admin), lang)
        page.goto(f"/console/admin?lang={lang}")
        charts = page.locator(t("chart"))
        expect(charts).to_have_count(7)
        for i in range(7):
            chart = charts.nth(i)
            assert chart.locator("svg").count() == 1
            box = chart.locator("svg").bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 40
            # every chart draws bars or says plainly that there is nothing yet
            assert chart.locator("rect.bar, .chart-empty").count() >= 1
        # the demo's lines and its outbox have something to show
        filled = page.locator(f"{t('chart')}:has(rect.bar)").count()
        assert filled >= 2, filled
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, width
        shot = tmp_path / f"dashboard-{lang}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        title = "数据看板" if lang == "zh-CN" else "Dashboard"
        expect(page.locator("h1")).to_have_text(title)
    finally:
        context.close()
