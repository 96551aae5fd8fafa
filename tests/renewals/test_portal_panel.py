"""The portal's auto-renew panel over plain HTTP: on/off, the funding choice, the next
renewal date in the operator's time zone, CSRF, post/redirect/get, both languages."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import select

from openmvno.accounts.models import Account
from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.lines.models import Line
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.orders.helpers import give_line, seed_plans
from tests.portal.helpers import csrf_of, portal_login, register_verified, text_of


async def _setup(client: httpx.AsyncClient, rt: Runtime, phone: str) -> Line:
    await seed_plans(rt)
    await register_verified(client, phone=phone)
    async with unit_of_work(rt.sessions) as s:
        account = await s.scalar(select(Account).where(Account.phone == "+86" + phone))
        plan = await s.scalar(select(Plan).where(Plan.code == "M30"))
        assert account is not None and plan is not None
        account_id, plan_id = account.id, plan.id
    # Expires 2026-12-31 16:30 UTC = 2027-01-01 00:30 in Shanghai.
    line = await give_line(rt, account_id, expires_at=datetime(2026, 12, 31, 16, 30, tzinfo=UTC))
    async with unit_of_work(rt.sessions) as s:
        found = await s.get(Line, line.id)
        assert found is not None
        found.plan_id = plan_id
    await portal_login(client, phone)
    return line


async def test_turn_on_see_the_date_turn_off(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    line = await _setup(client, rt, "13900001111")
    account = await client.get("/account")
    assert f'href="/lines/{line.id}/auto-renew"' in account.text
    assert "Auto-renew: Off" in text_of(account.text)

    url = f"/lines/{line.id}/auto-renew"
    page = await client.get(url)
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Auto-renew Off" in text and "Enjoy 30 days" in text and "CN¥50.00" in text
    assert "No saved cards yet." in text

    r = await client.post(url, data={"csrf": csrf_of(page.text), "enabled": "on",
                                     "funding": "wallet", "wallet_fallback": "on"})
    assert r.status_code == 303 and r.headers["location"] == url + "?done=auto_renew_on"
    page = await client.get(r.headers["location"])
    text = text_of(page.text)
    assert "Auto-renew is on for this line." in text
    assert "Next renewal 2027-01-01 00:30" in text  # Asia/Shanghai
    assert "Charged from 2026-12-31 00:30" in text  # T-24h
    assert "Paid with Wallet" in text
    assert "Auto-renew: On" in text_of((await client.get("/account")).text)

    zh = text_of((await client.get(url + "?lang=zh-CN")).text)
    assert "自动续费" in zh and "下次续费 2027-01-01 00:30" in zh and "¥50.00" in zh
    await client.get(url + "?lang=en")

    r = await client.post(url, data={"csrf": csrf_of(page.text), "funding": "wallet"})
    assert r.status_code == 303 and r.headers["location"].endswith("done=auto_renew_off")
    text = text_of((await client.get(r.headers["location"])).text)
    assert "Auto-renew is off for this line." in text and "Next renewal" not in text


async def test_refusals(client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock) -> None:
    line = await _setup(client, rt, "13900002222")
    url = f"/lines/{line.id}/auto-renew"
    page = await client.get(url)
    r = await client.post(url, data={"enabled": "on", "funding": "wallet"})
    assert r.status_code == 403  # no CSRF token
    r = await client.post(url, data={"csrf": csrf_of(page.text), "enabled": "on",
                                     "funding": "card:not-a-card"})
    assert r.status_code == 303 and r.headers["location"] == url
    text = text_of((await client.get(url)).text)
    assert "Choose the wallet or one of your saved cards." in text
    assert "Auto-renew Off" in text
    r = await client.post(url, data={"csrf": csrf_of(page.text), "enabled": "on",
                                     "funding": "card:00000000-0000-0000-0000-000000000000"})
    assert r.status_code == 303
    assert "There is no such saved card on your account." in text_of((await client.get(url)).text)
    other = await client.get("/lines/00000000-0000-0000-0000-000000000000/auto-renew")
    assert other.status_code == 404
    garbage = await client.get("/lines/garbage/auto-renew")
    assert garbage.status_code == 404
    anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")
    r = await anonymous.get(url)
    assert r.status_code == 303 and "login" in r.headers["location"]
    await anonymous.aclose()
