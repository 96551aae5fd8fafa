"""My account, plans, device binding and eSIM pages over plain HTTP."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx

from openmvno import clock
from openmvno.accounts import service as accounts
from openmvno.catalog import service as catalog
from openmvno.catalog.schemas import PlanIn
from openmvno.db import unit_of_work
from openmvno.formatting import Formatter
from openmvno.lines import service as lines
from openmvno.lines.identifiers import luhn_complete
from openmvno.lines.importer import import_lines
from openmvno.lines.models import LineKind, LineState
from openmvno.lines.states import transition
from openmvno.runtime import Runtime
from tests.portal.helpers import csrf_of, portal_login, register_verified, text_of


async def _stock(rt: Runtime) -> None:
    async with unit_of_work(rt.sessions) as session:
        for code, kind, zh, en, price in (
            ("P-DATA", "data", "流量 10GB", "Surf 10 GB", 3000),
            ("P-MIX", "mixed", "全能套餐", "All-in", 5900),
        ):
            await catalog.create_plan(
                session,
                PlanIn(code=code, kind=kind, name_zh=zh, name_en=en, price_minor=price,
                       data_gb=10, voice_minutes=100 if kind == "mixed" else 0,
                       terms_en="Fair use applies.", terms_zh="合理使用。"),  # type: ignore[arg-type]
                actor=None, default_currency="CNY",
            )
        rows = ["kind,iccid,msisdn,device_serial,esim_matching_id,pin"]
        for i in range(3):
            rows.append(f"esim,{luhn_complete(f'8986001{i:012d}')},+8617000000{i:03d},,M-{i:04d},")
        rows.append(f"datacard,{luhn_complete('8986002' + '0' * 12)},+8617100000000,DC20260001,,PIN123")
        await import_lines(session, rt, "\n".join(rows) + "\n")


async def _give_esim(rt: Runtime, login: str) -> uuid.UUID:
    async with unit_of_work(rt.sessions) as session:
        account = await accounts.get_by_login(session, rt, login)
        assert account is not None
        line = await lines.claim_inventory(session, account_id=account.id, kind=LineKind.esim)
        line.plan_id = (await catalog.get_plan(session, "P-DATA")).id
        line.expires_at = clock.now() + timedelta(days=30)
        await transition(session, line, LineState.active, "test")
        return line.id


async def test_account_needs_login_and_comes_back_after_it(client: httpx.AsyncClient) -> None:
    r = await client.get("/account")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Faccount&done=login_required"
    await register_verified(client, phone="13800138100")
    page = await client.get(r.headers["location"])
    assert "Please log in to see this page." in text_of(page.text)
    r = await client.post(
        "/login",
        data={"csrf": csrf_of(page.text), "next": "/account", "login": "13800138100",
              "password": "Spring-2026"},
    )
    assert r.headers["location"] == "/account"
    page = await client.get("/account")
    assert "Hello, Li Lei." in text_of(page.text)
    assert "You have no lines yet." in text_of(page.text)


async def test_account_lists_lines_with_plan_name_in_the_page_language(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _stock(rt)
    await register_verified(client, phone="13800138101")
    await portal_login(client, "13800138101")
    line_id = await _give_esim(rt, "+8613800138101")
    page = text_of((await client.get("/account?lang=en")).text)
    assert "+8617000000000" in page and "eSIM" in page and "Active" in page
    assert "Surf 10 GB" in page
    expiry = Formatter("en").date(clock.now() + timedelta(days=30))[:10]
    assert expiry in page
    raw = (await client.get("/account?lang=zh-CN")).text
    assert "流量 10GB" in text_of(raw) and "正常使用" in text_of(raw)
    assert f'href="/lines/{line_id}/esim"' in raw


async def test_plans_are_public_and_filter_by_kind(client: httpx.AsyncClient, rt: Runtime) -> None:
    await _stock(rt)
    page = text_of((await client.get("/plans?lang=en")).text)
    assert "Surf 10 GB" in page and "All-in" in page
    assert "CN¥30.00" in page and "30 days" in page and "10 GB" in page and "100 min" in page
    page = text_of((await client.get("/plans?kind=mixed")).text)
    assert "All-in" in page and "Surf 10 GB" not in page
    page = text_of((await client.get("/plans?kind=topup")).text)
    assert "No plans of this kind are on sale right now." in page
    page = text_of((await client.get("/plans?kind=nonsense&lang=zh-CN")).text)
    assert "流量 10GB" in page and "¥30.00" in page and "合理使用。" in page


async def test_bind_shows_clear_errors_then_binds_and_unbinds(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _stock(rt)
    await register_verified(client, phone="13800138102")
    await portal_login(client, "13800138102")
    form = await client.get("/devices/bind")
    token = csrf_of(form.text)
    r = await client.post("/devices/bind", data={"csrf": token, "serial": "DC2026OOO1", "secret": "PIN123"})
    assert r.status_code == 404
    assert "No device has the serial DC2026OOO1." in text_of(r.text)
    assert 'value="DC2026OOO1"' in r.text and "PIN123" not in r.text
    r = await client.post("/devices/bind", data={"csrf": token, "serial": "DC20260001", "secret": "000000"})
    assert r.status_code == 422 and "The PIN does not match this serial." in text_of(r.text)
    r = await client.post("/devices/bind", data={"csrf": token, "serial": "dc-2026 0001", "secret": "pin123"})
    assert r.status_code == 303 and r.headers["location"] == "/account?done=bound"
    page = await client.get(r.headers["location"])
    assert "The device is now bound to your account." in text_of(page.text)
    assert "DC20260001" in text_of(page.text) and "Data card" in text_of(page.text)
    unbind_action = page.text.split('action="/lines/')[1].split('"')[0]
    r = await client.post(f"/lines/{unbind_action}", data={"csrf": "nope"})
    assert r.status_code == 403
    r = await client.post(f"/lines/{unbind_action}", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303
    page = await client.get(r.headers["location"])
    assert "DC20260001" not in page.text


async def test_bind_without_csrf_is_refused(client: httpx.AsyncClient, rt: Runtime) -> None:
    await _stock(rt)
    await register_verified(client, phone="13800138103")
    await portal_login(client, "13800138103")
    r = await client.post("/devices/bind", data={"serial": "DC20260001", "secret": "PIN123"})
    assert r.status_code == 403 and "This form has expired" in text_of(r.text)
    page = await client.get("/account")
    assert "DC20260001" not in page.text


async def test_esim_page_and_qr_only_for_the_owner(client: httpx.AsyncClient, rt: Runtime) -> None:
    await _stock(rt)
    await register_verified(client, phone="13800138104")
    await portal_login(client, "13800138104")
    line_id = await _give_esim(rt, "+8613800138104")
    page = await client.get(f"/lines/{line_id}/esim?lang=en")
    assert page.status_code == 200
    assert f"LPA:1${rt.settings.smdp_address}$M-0000" in page.text
    assert "iPhone" in page.text and "Android" in page.text
    qr = await client.get(f"/lines/{line_id}/esim/qr.png")
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/png"
    assert qr.content.startswith(b"\x89PNG") and "no-store" in qr.headers["cache-control"]

    await client.post("/logout", data={"csrf": csrf_of(page.text)})
    await register_verified(client, phone="13800138105", name="Han Meimei")
    await portal_login(client, "13800138105")
    r = await client.get(f"/lines/{line_id}/esim")
    assert r.status_code == 404 and "belongs to another account" in text_of(r.text)
    assert "LPA:1$" not in r.text
    assert (await client.get(f"/lines/{line_id}/esim/qr.png")).status_code == 404
    assert (await client.get(f"/lines/{uuid.uuid4()}/esim")).status_code == 404
    r = await client.get("/lines/not-a-uuid/esim")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
