"""My account → Usage: a bar chart per kind in both languages, on a phone, no script."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.runtime import Runtime
from openmvno.usage import peers
from tests.browser_fixtures import PortalServer
from tests.portal.test_browser import log_in, register_and_verify, t

pytestmark = pytest.mark.browser
MB = 1024**2
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844}, "device_scale_factor": 3,
    "is_mobile": True, "has_touch": True,
}


def _grant(server: PortalServer, line_id: Any, plan_code: str) -> None:
    """The plan's buckets on the line (what a paid order grants)."""
    from openmvno.catalog import service as catalog
    from openmvno.ledger import service as ledger
    from openmvno.lines.models import Line

    async def work(session: AsyncSession, _rt: Runtime) -> None:
        line = await session.get(Line, line_id)
        assert line is not None and line.account_id is not None
        plan = await catalog.get_plan(session, plan_code)
        start = clock.now() - timedelta(days=5)
        await ledger.grant_plan(
            session, account_id=line.account_id, line_id=line.id, plan=plan, order_id=None,
            valid_from=start, valid_until=start + timedelta(days=30),
            key=f"test-grant:{line.id}",
        )

    server.run(work)


def _key(server: PortalServer) -> str:
    async def work(session: AsyncSession, _rt: Runtime) -> str:
        _peer, key = await peers.create(session, name=f"pgw-portal-{clock.now().timestamp()}")
        return key

    return server.run(work)


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_usage_chart_on_a_phone(
    browser: Browser, base_url: str, portal_server: PortalServer,
    new_phone: Callable[[], str], lang: str,
) -> None:
    context = browser.new_context(base_url=base_url, **PHONE)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        phone = new_phone()
        register_and_verify(page, portal_server, phone, lang=lang)
        line = portal_server.give_esim("+86" + phone, "BT-MIX-59")
        _grant(portal_server, line.id, "BT-MIX-59")
        key = _key(portal_server)
        now = clock.now()
        records = [
            {"record_id": f"{line.id}-d{i}", "msisdn": line.msisdn, "type": "data",
             "units": (i + 1) * 100 * MB, "started_at": (now - timedelta(days=i)).isoformat()}
            for i in range(3)
        ] + [{"record_id": f"{line.id}-v", "msisdn": line.msisdn, "type": "voice",
              "units": 125, "started_at": now.isoformat()}]
        r = httpx.post(f"{base_url}/api/v1/usage", json={"records": records},
                       headers={"X-API-Key": key}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["counts"] == {"charged": 4}
        log_in(page, phone)
        page.click(f"[data-line-id='{line.id}'] {t('usage-link')}")
        expect(page).to_have_url(re.compile(rf"/lines/{line.id}/usage$"))
        charts = page.locator(t("usage-chart"))
        expect(charts).to_have_count(2)  # data, and voice (used); no SMS chart
        data = page.locator(f"{t('usage-chart')}[data-kind=data]")
        expect(data.locator(t("usage-bar"))).to_have_count(30)
        total = data.locator(t("usage-total")).inner_text()
        assert total == "600 MB", total
        label = data.locator(t("usage-svg")).get_attribute("aria-label") or ""
        if lang == "zh-CN":
            assert label.startswith("已用流量：30 天共 600 MB"), label
        else:
            assert label.startswith("Data used: 600 MB in 30 days"), label
        # A phone shows it without scrolling sideways, and the page ran no script.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        page.click(t("usage-range"))  # another range: a plain link
        expect(page.locator(t("usage-range-current"))).to_be_visible()
        assert not [e for e in errors if "Content Security Policy" in e], errors
    finally:
        context.close()


def test_someone_elses_usage_page_is_not_found(
    browser: Browser, base_url: str, portal_server: PortalServer,
    new_phone: Callable[[], str],
) -> None:
    context = browser.new_context(base_url=base_url)
    try:
        page = context.new_page()
        owner = new_phone()
        register_and_verify(page, portal_server, owner)
        line = portal_server.give_esim("+86" + owner, "BT-DATA-30")
        other_context = browser.new_context(base_url=base_url)
        other = other_context.new_page()
        intruder = new_phone()
        register_and_verify(other, portal_server, intruder)
        log_in(other, intruder)
        response = other.goto(f"/lines/{line.id}/usage")
        assert response is not None and response.status == 404
        response = other.goto("/lines/not-a-uuid/usage")
        assert response is not None and response.status == 404
        other_context.close()
    finally:
        context.close()
