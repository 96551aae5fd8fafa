"""Notification settings in Chromium: saved, shown again, both channels off refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.browser_fixtures import PortalServer
from tests.portal.test_browser import log_in, register_and_verify, t

pytestmark = pytest.mark.browser


def test_preferences_are_saved_and_shown_again(
    page: Page, portal_server: PortalServer, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    register_and_verify(page, portal_server, phone, name="Lin Tao", lang="zh-CN")
    log_in(page, "+86" + phone)
    page.click(t("notifications-link"))  # linked from my account
    expect(page.locator("h1")).to_have_text("通知设置")
    expect(page.locator(t("sms"))).to_be_checked()
    expect(page.locator(t("marketing"))).not_to_be_checked()
    page.uncheck(t("sms"))
    page.check(t("marketing"))
    page.click(t("save"))
    expect(page.locator(t("saved"))).to_have_text("通知设置已保存。")
    page.reload()
    expect(page.locator(t("sms"))).not_to_be_checked()
    expect(page.locator(t("email"))).to_be_checked()
    expect(page.locator(t("marketing"))).to_be_checked()

    page.uncheck(t("email"))
    page.click(t("save"))
    expect(page.locator(t("error"))).to_contain_text("无法关闭")
    page.goto("/account/notifications")
    expect(page.locator(t("email"))).to_be_checked()  # nothing was changed
    expect(page.locator(t("marketing"))).to_be_checked()
