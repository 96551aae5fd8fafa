"""The subscriber portal in headless Chromium against a real ``openmvno serve``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from openmvno.formatting import Formatter
from tests.browser_fixtures import PASSWORD, PortalServer

pytestmark = pytest.mark.browser

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "html_lang": "en",
        "register_h1": "Create your account",
        "sent": "We sent a 6-digit code by SMS to",
        "cooldown": "Please wait",
        "verified": "Your account is verified. Log in to continue.",
        "hello": "Hello, {name}.",
        "no_lines": "You have no lines yet.",
        "esim": "eSIM",
        "active": "Active",
        "plan": "Roam 10 GB Monthly",
        "other_plan": "All-in 20 GB",
        "price": "CN¥30.00",
        "validity": "30 days",
        "serial_typo": "No device has the serial {serial}.",
        "bound": "The device is now bound to your account.",
        "datacard": "Data card",
        "not_activated": "Not activated yet",
        "unbound": "The device was unbound from your account.",
        "iphone": "iPhone",
        "android": "Android",
        "logged_out": "You are logged out.",
        "login_required": "Please log in to see this page.",
    },
    "zh-CN": {
        "html_lang": "zh-CN",
        "register_h1": "创建账户",
        "sent": "我们已通过短信向",
        "cooldown": "请等待",
        "verified": "账户已验证，请登录。",
        "hello": "{name}，您好。",
        "no_lines": "您还没有号码。",
        "esim": "eSIM",
        "active": "正常使用",
        "plan": "畅游 10GB 月包",
        "other_plan": "全能 20GB 套餐",
        "price": "¥30.00",
        "validity": "30 天",
        "serial_typo": "找不到序列号为 {serial} 的设备。",
        "bound": "设备已绑定到您的账户。",
        "datacard": "数据卡",
        "not_activated": "未激活",
        "unbound": "设备已从您的账户解绑。",
        "iphone": "iPhone",
        "android": "安卓手机",
        "logged_out": "您已退出登录。",
        "login_required": "请登录后查看此页面。",
    },
}


def t(sel: str) -> str:
    return f"[data-test={sel}]"


def register_and_verify(
    page: Page, server: PortalServer, phone: str, *, name: str = "Li Lei", lang: str = "en"
) -> None:
    """Register through the form and enter the code from the dev outbox."""
    page.goto(f"/register?lang={lang}")
    page.fill(t("name"), name)
    page.fill(t("phone"), phone)
    page.fill(t("password"), PASSWORD)
    page.select_option(t("language"), lang)
    page.click(t("submit"))
    expect(page).to_have_url(re.compile(r"/verify\?"))
    page.fill(t("code"), server.last_code("+86" + phone))
    page.click(t("submit"))
    expect(page.locator(t("flash"))).to_be_visible()


def log_in(page: Page, phone: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill(t("login"), phone)
    page.fill(t("password"), password)
    page.click(t("submit"))
    expect(page).to_have_url(re.compile(r"/account$"))


def journey(
    page: Page, server: PortalServer, phone: str, card: tuple[str, str], lang: str
) -> None:
    """Register → verify → log in → account → plans → bind → eSIM → unbind → log out."""
    x = TEXT[lang]
    other = "en" if lang == "zh-CN" else "zh-CN"
    page.goto(f"/?lang={other}")
    page.click(t("lang-zh") if lang == "zh-CN" else t("lang-en"))  # switch via the link
    expect(page.locator("html")).to_have_attribute("lang", x["html_lang"])
    page.click(t("landing-register"))
    expect(page.locator("h1")).to_have_text(x["register_h1"])  # the lang cookie stuck

    page.fill(t("name"), "韩梅梅" if lang == "zh-CN" else "Han Meimei")
    page.fill(t("phone"), phone)
    page.fill(t("password"), PASSWORD)
    page.select_option(t("language"), lang)
    page.check(t("channel-sms"))
    page.click(t("submit"))

    # verify: asking again at once meets the 60 s cool-down
    expect(page.locator(t("sent"))).to_contain_text(x["sent"])
    page.click(t("resend"))
    expect(page.locator(t("error"))).to_contain_text(x["cooldown"])
    expect(page.locator(t("login"))).to_have_value("+86" + phone)
    page.fill(t("code"), server.last_code("+86" + phone))
    page.click(t("submit"))
    expect(page.locator(t("flash"))).to_have_text(x["verified"])

    # log in (the login field is filled in for us)
    expect(page.locator(t("login"))).to_have_value("+86" + phone)
    page.fill(t("password"), PASSWORD)
    page.click(t("submit"))
    expect(page).to_have_url(re.compile(r"/account$"))
    name = "韩梅梅" if lang == "zh-CN" else "Han Meimei"
    expect(page.locator(t("account-name"))).to_have_text(x["hello"].format(name=name))
    expect(page.locator(t("no-lines"))).to_contain_text(x["no_lines"])

    # a paid eSIM appears on the account with its plan in the page's language
    owned = server.give_esim("+86" + phone, "BT-DATA-30")
    page.reload()
    card_el = page.locator(f"[data-line-id='{owned.id}']")
    expect(card_el.locator(t("line-number"))).to_have_text(owned.msisdn)
    expect(card_el.locator(t("line-kind"))).to_have_text(x["esim"])
    expect(card_el.locator(t("line-state"))).to_have_text(x["active"])
    expect(card_el.locator(t("line-plan"))).to_have_text(x["plan"])
    expect(card_el.locator(t("line-expiry"))).to_have_text(Formatter(lang).date(owned.expires_at))

    # plans: public list with price and validity, filter by kind
    page.click(t("nav-plans"))
    plan = page.locator("[data-plan-code='BT-DATA-30']")
    expect(plan.locator(t("plan-name"))).to_have_text(x["plan"])
    expect(plan.locator(t("plan-price"))).to_have_text(x["price"])
    expect(plan.locator(t("plan-validity"))).to_have_text(x["validity"])
    expect(plan.locator(t("plan-data"))).to_have_text("10 GB")
    expect(page.locator("[data-plan-code='BT-MIX-59']")).to_be_visible()
    page.click(t("filter-mixed"))
    expect(page).to_have_url(re.compile(r"/plans\?kind=mixed$"))
    expect(page.locator("[data-plan-code='BT-MIX-59'] [data-test=plan-name]")).to_have_text(
        x["other_plan"]
    )
    expect(page.locator("[data-plan-code='BT-DATA-30']")).to_have_count(0)

    # bind a data card: a typo first, then the real serial typed loosely
    serial, pin = card
    typo = serial[:6] + "O" + serial[7:]  # the letter O for a zero
    assert typo != serial
    page.click(t("nav-bind"))
    page.fill(t("serial"), typo)
    page.fill(t("secret"), pin)
    page.click(t("submit"))
    expect(page.locator(t("error"))).to_contain_text(x["serial_typo"].format(serial=typo))
    expect(page.locator(t("serial"))).to_have_value(typo)
    expect(page.locator(t("secret"))).to_have_value("")
    page.fill(t("serial"), serial.lower()[:4] + "-" + serial[4:])
    page.fill(t("secret"), pin)
    page.click(t("submit"))
    expect(page.locator(t("flash"))).to_have_text(x["bound"])
    device = page.locator(t("line")).filter(has=page.locator(t("line-serial")))
    expect(device.locator(t("line-serial"))).to_have_text(serial)
    expect(device.locator(t("line-kind"))).to_have_text(x["datacard"])
    expect(device.locator(t("line-state"))).to_have_text(x["not_activated"])

    # eSIM page: LPA text, QR image that really loads, install steps
    card_el.locator(t("esim-link")).click()
    expect(page).to_have_url(re.compile(rf"/lines/{owned.id}/esim$"))
    expect(page.locator(t("lpa"))).to_have_text(owned.activation_code)
    assert page.locator(t("lpa")).inner_text().startswith("LPA:1$")
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-test=qr]');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    assert page.locator(t("qr")).evaluate("i => i.naturalWidth") > 100
    expect(page.locator(t("steps-iphone"))).to_contain_text(x["iphone"])
    expect(page.locator(t("steps-android"))).to_contain_text(x["android"])

    # unbind from the account page
    page.click(t("nav-account"))
    device.locator(t("unbind")).click()
    expect(page.locator(t("flash"))).to_have_text(x["unbound"])
    expect(page.locator(t("line-serial"))).to_have_count(0)
    expect(page.locator(t("line"))).to_have_count(1)

    # log out; the account page is closed again
    page.click(t("logout"))
    expect(page.locator(t("flash"))).to_have_text(x["logged_out"])
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Faccount"))
    expect(page.locator(t("flash"))).to_have_text(x["login_required"])


def test_journey_in_english_on_desktop(
    page: Page, portal_server: PortalServer, new_phone: Callable[[], str],
    datacard: tuple[str, str],
) -> None:
    journey(page, portal_server, new_phone(), datacard, "en")


def test_journey_in_chinese_on_a_phone(
    browser: Browser, base_url: str, portal_server: PortalServer,
    new_phone: Callable[[], str], datacard: tuple[str, str],
) -> None:
    phone_size: dict[str, Any] = {
        "viewport": {"width": 390, "height": 844}, "device_scale_factor": 3,
        "is_mobile": True, "has_touch": True,
    }
    context = browser.new_context(base_url=base_url, **phone_size)
    try:
        page = context.new_page()
        journey(page, portal_server, new_phone(), datacard, "zh-CN")
        for path in ("/plans", "/register", "/login"):
            page.goto(path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways on a phone ({width}px)"
    finally:
        context.close()


def test_wrong_code_shows_attempts_left(
    page: Page, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    page.goto("/register?lang=en")
    page.fill(t("name"), "Li Lei")
    page.fill(t("phone"), phone)
    page.fill(t("password"), PASSWORD)
    page.click(t("submit"))
    good = portal_server.last_code("+86" + phone)
    page.fill(t("code"), f"{(int(good) + 1) % 10**6:06d}")
    page.click(t("submit"))
    expect(page.locator(t("error"))).to_have_text(
        "This code is wrong or no longer valid. Check it, or ask for a new one."
    )
    page.click(t("lang-zh"))
    page.fill(t("code"), f"{(int(good) + 2) % 10**6:06d}")
    page.click(t("submit"))
    expect(page.locator(t("error"))).to_have_text("验证码错误或已失效。请核对，或重新获取验证码。")


def test_send_code_by_email_instead(
    page: Page, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    email = f"user{phone}@example.com"
    page.goto("/register?lang=en")
    page.fill(t("name"), "Li Lei")
    page.fill(t("phone"), phone)
    page.fill(t("email"), email)
    page.fill(t("password"), PASSWORD)
    page.check(t("channel-email"))
    page.click(t("submit"))
    expect(page.locator(t("sent"))).to_contain_text("by email")
    page.click(t("resend-email"))  # too soon: the cool-down is explained, nothing breaks
    expect(page.locator(t("error"))).to_contain_text("before asking for another code")
    page.fill(t("code"), portal_server.last_code(email))
    page.click(t("submit"))
    expect(page.locator(t("flash"))).to_have_text("Your account is verified. Log in to continue.")


def test_post_without_csrf_token_is_refused(
    page: Page, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    register_and_verify(page, portal_server, phone)
    page.goto("/login?lang=en")  # the browser now holds the anonymous CSRF cookie
    r = page.request.post("/login", form={"login": phone, "password": PASSWORD})
    assert r.status == 403
    assert "This form has expired" in r.text()
    r = page.request.post("/login", form={"login": phone, "password": PASSWORD, "csrf": "x.y"})
    assert r.status == 403
    log_in(page, phone)
    r = page.request.post("/devices/bind", form={"serial": "BTDC000000", "secret": "P00000"})
    assert r.status == 403
    r = page.request.post("/logout", form={})
    assert r.status == 403
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/account$"))  # still logged in


def test_logged_out_visitor_is_sent_to_login_and_back(
    page: Page, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    register_and_verify(page, portal_server, phone)
    page.goto("/devices/bind?lang=en")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fdevices%2Fbind"))
    expect(page.locator(t("flash"))).to_have_text("Please log in to see this page.")
    page.fill(t("login"), phone)
    page.fill(t("password"), PASSWORD)
    page.click(t("submit"))
    expect(page).to_have_url(re.compile(r"/devices/bind\?lang=en$"))
    expect(page.locator(t("serial"))).to_be_visible()


def test_another_subscribers_esim_page_is_not_found(
    browser: Browser, base_url: str, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    owner, stranger = new_phone(), new_phone()
    context = browser.new_context(base_url=base_url)
    try:
        page = context.new_page()
        register_and_verify(page, portal_server, owner)
        owned = portal_server.give_esim("+86" + owner, "BT-MIX-59")
        register_and_verify(page, portal_server, stranger, name="Han Meimei")
        log_in(page, stranger)
        response = page.goto(f"/lines/{owned.id}/esim?lang=en")
        assert response is not None and response.status == 404
        expect(page.locator(t("error-title"))).to_have_text("Not found")
        expect(page.locator("body")).not_to_contain_text("LPA:1$")
        qr = page.request.get(f"/lines/{owned.id}/esim/qr.png")
        assert qr.status == 404
    finally:
        context.close()


def test_forgot_password_then_log_in_with_the_new_one(
    page: Page, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    register_and_verify(page, portal_server, phone, lang="zh-CN")
    page.goto("/login?lang=zh-CN")
    page.click(t("forgot-link"))
    page.fill(t("login"), phone)
    page.click(t("submit"))
    expect(page.locator(t("flash"))).to_have_text("如果该手机号或邮箱已注册，我们已向其发送验证码。")
    page.fill(t("code"), portal_server.last_code("+86" + phone))
    page.fill(t("password"), "Autumn-2027x")
    page.click(t("submit"))
    expect(page.locator(t("flash"))).to_have_text("密码已修改，请使用新密码登录。")
    page.fill(t("password"), PASSWORD)
    page.click(t("submit"))
    expect(page.locator(t("error"))).to_have_text("手机号、邮箱或密码错误。")
    expect(page.locator(t("password"))).to_have_value("")
    log_in(page, phone, "Autumn-2027x")
