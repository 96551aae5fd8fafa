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
from tests.browser_fixtures import PortalServer

pytestmark = pytest.mark.browser
DEMO_LOGIN = "+8613800000000"
DEMO_LINE = "17020200900"  # the demo subscriber's eSIM (openmvno.demo)
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


def _new_caller(server: PortalServer, name: str, wallet: int) -> tuple[str, str, str]:
    """A verified subscriber with an active line and a data card: (phone, msisdn, serial)."""
    from openmvno.accounts.identity import normalize_phone
    from openmvno.accounts.models import Account
    from openmvno.ledger import service as ledger
    from openmvno.ledger.models import EntryReason
    from openmvno.lines.models import LineKind, LineState

    phone = f"+86139{uuid.uuid4().int % 10**8:08d}"
    serial = f"MV{uuid.uuid4().int % 10**10:010d}"
    msisdn = f"+86172{uuid.uuid4().int % 10**8:08d}"

    async def work(session: AsyncSession, rt: Runtime) -> None:
        from openmvno import clock

        account = Account(name=name, phone=normalize_phone(phone, "CN"), language="zh-CN",
                          password_hash=rt.passwords.hash("Unused-pass-2026"),
                          verified_at=clock.now())
        session.add(account)
        await session.flush()
        session.add(Line(kind=LineKind.datacard, iccid=f"8986009{uuid.uuid4().int % 10**12:012d}",
                         msisdn=msisdn, device_serial=serial, account_id=account.id,
                         state=LineState.active))
        if wallet:
            await ledger.credit_wallet(session, account_id=account.id, currency="CNY",
                                       amount_minor=wallet, reason=EntryReason.adjust,
                                       key=f"browser-fund:{uuid.uuid4()}")

    server.run(work)
    return phone, msisdn, serial


def test_agent_moves_a_misdirected_topup(page: Page, browser: Browser,
                                         portal_server: PortalServer) -> None:
    server = portal_server
    _wrong_phone, wrong_msisdn, wrong_serial = _new_caller(server, "错号码", 0)
    _right_phone, right_msisdn, _ = _new_caller(server, "对号码", 1000)
    # a guest tops up the wrong number on the site
    guest = browser.new_context(base_url=server.base_url)
    try:
        g = guest.new_page()
        g.goto("/topup?lang=zh-CN")
        g.fill(t("msisdn"), wrong_msisdn.removeprefix("+86"))
        g.click(t("lookup"))
        g.fill(t("amount"), "30")
        g.check(t("method-card"))
        g.click(t("pay"))
        expect(g).to_have_url(re.compile(r"/sandbox/pay/sbx_"))
        g.fill(t("card-number"), "4242424242424242")
        g.fill(t("card-expiry"), "12/39")
        g.fill(t("card-cvc"), "123")
        g.click(t("pay"))
        expect(g.locator(t("order-state"))).to_have_text("已完成")
        number = g.locator(t("order-number")).inner_text().strip().split()[-1]
    finally:
        guest.close()
    console_log_in(page, make_staff(server, Role.agent))
    page.fill(t("search"), wrong_serial)
    page.click(t("search-submit"))
    page.click(t("open-account"))
    page.fill(t("caller-serial"), wrong_serial)
    page.fill(t("caller-name"), "错号码")
    page.click(t("check-device"))
    expect(page.locator(t("verified"))).to_be_visible()
    expect(page.locator(t("wallet"))).to_have_text("¥30.00")
    page.click(f"{t('orders')} a:has-text('{number[-6:]}')")
    page.fill(t("move-msisdn"), right_msisdn)
    page.fill(t("move-reason"), "付款人输错了一位")
    page.click(t("move-topup"))
    expect(page.locator(t("flash"))).to_be_visible()
    expect(page.locator(t("moved-to"))).to_have_text(right_msisdn)
    page.click(t("back-to-caller"))
    expect(page.locator(t("wallet"))).to_have_text("¥0.00")
    page.goto("/console?q=" + right_msisdn.replace("+", "%2B"))
    page.click(t("open-account"))
    expect(page.locator(t("wallet"))).to_have_text("¥40.00")
    # the admin sees one audit event with both wallets before and after
    admin = browser.new_context(base_url=server.base_url)
    try:
        a = admin.new_page()
        console_log_in(a, make_staff(server, Role.admin))
        a.goto("/console/admin/audit?action=topup.moved")
        row = a.locator('[data-test="audit-topup.moved"]')
        expect(row).to_have_count(1)
        expect(row).to_contain_text("付款人输错了一位")
        expect(row).to_contain_text('"from_wallet_minor": 3000')
        expect(row).to_contain_text('"to_wallet_minor": 4000')
    finally:
        admin.close()


def test_admin_retires_a_plan_and_turns_alipay_off(page: Page, browser: Browser,
                                                   portal_server: PortalServer) -> None:
    from openmvno.catalog import service as catalog
    from openmvno.catalog.schemas import PlanIn
    from openmvno.channels.sms.commands import handle

    server = portal_server
    code = f"BT-RET-{uuid.uuid4().hex[:4].upper()}"

    async def plan(session: AsyncSession, rt: Runtime) -> None:
        await catalog.create_plan(session, PlanIn(
            code=code, kind="data", name_zh="即将下架包", name_en="Soon retired", price_minor=900,
            validity_days=7, data_gb=1, terms_zh="", terms_en=""), actor=None,
            default_currency="CNY")

    server.run(plan)
    phone, _msisdn, _ = _new_caller(server, "短信用户", 0)

    def sms_plans() -> str:
        async def work(session: AsyncSession, rt: Runtime) -> str:
            reply = await handle(rt, sender=phone, text="PLANS", channel="test")
            assert reply is not None
            return reply.body

        return server.run(work)

    visitor = browser.new_context(base_url=server.base_url)
    try:
        v = visitor.new_page()
        v.goto("/plans?lang=zh-CN")
        expect(v.locator("body")).to_contain_text("即将下架包")
        assert code in sms_plans()
        console_log_in(page, make_staff(server, Role.admin))
        page.goto("/console/admin/plans")
        page.locator(t(f"plan-{code}")).locator("input[name=reason]").last.fill("旧套餐")
        page.click(t(f"retire-{code}"))
        expect(page.locator(t(f"plan-{code}"))).to_contain_text("已下架")
        v.goto("/plans?lang=zh-CN")
        expect(v.locator("body")).not_to_contain_text("即将下架包")
        assert code not in sms_plans()

        # Alipay off: gone from the API's list and the site's top-up form
        def offered() -> list[str]:
            r = httpx.get(f"{server.base_url}/api/v1/payment-methods", timeout=10)
            return [m["method"] for m in r.json()]

        assert "alipay" in offered()
        page.goto("/console/admin/payment-methods")
        page.click(t("toggle-alipay"))
        expect(page.locator(t("state-alipay"))).to_have_text(re.compile("关"))
        assert "alipay" not in offered()
        v.goto("/topup?lang=zh-CN")
        v.fill(t("msisdn"), DEMO_LINE)
        v.click(t("lookup"))
        expect(v.locator(t("method-card"))).to_have_count(1)
        expect(v.locator(t("method-alipay"))).to_have_count(0)
        page.click(t("toggle-alipay"))  # on again for the other tests
        expect(page.locator(t("state-alipay"))).to_have_text(re.compile("开"))
    finally:
        visitor.close()
