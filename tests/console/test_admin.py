"""Admin console over HTTP: retiring a plan takes it out of the portal, the API, SMS PLANS
and the USSD menu; switching Alipay off takes it out of every channel (and payments refuse
it); a price change keeps the history and lines keep what they bought; staff and roles;
peer keys shown once; the audit log filters; the dashboard's charts; CSV exports; TOTP."""

from __future__ import annotations

import csv
import io
import uuid

import httpx
import pyotp
from pydantic import SecretStr
from sqlalchemy import select

from openmvno.accounts.models import Role
from openmvno.channels.sms.commands import handle
from openmvno.db import unit_of_work
from openmvno.orders.models import Order
from openmvno.runtime import Runtime
from openmvno.staff.models import StaffTotp
from tests.conftest import FrozenClock, app_for
from tests.console.helpers import console_login, csrf_of, make_staff, staff_client
from tests.orders.helpers import order, pay
from tests.sms.helpers import person

USSD_SECRET = "ussd-shared-secret-0123456789"


async def test_agents_do_not_open_admin_pages(rt: Runtime) -> None:
    app = app_for(rt)
    agent, _ = await staff_client(app, rt, Role.agent)
    for path in ("/console/admin", "/console/admin/plans", "/console/admin/audit"):
        assert (await agent.get(path)).status_code == 403
    await agent.aclose()


async def test_retired_plan_leaves_portal_api_sms_and_ussd(rt: Runtime,
                                                           client: httpx.AsyncClient) -> None:
    rt.settings = rt.settings.model_copy(update={"ussd_secret": SecretStr(USSD_SECRET)})
    p = await person(client, rt, plan=None)
    app = app_for(rt)
    admin, csrf = await staff_client(app, rt, Role.admin)

    async def ussd_plans() -> str:
        r = await client.post("/ussd", data={"sessionId": uuid.uuid4().hex,
                                             "serviceCode": "*123#", "phoneNumber": p.msisdn,
                                             "text": "2"}, headers={"X-USSD-Secret": USSD_SECRET})
        return r.text

    async def sms_plans() -> str:
        reply = await handle(rt, sender=p.msisdn, text="PLANS", channel="test")
        assert reply is not None
        return reply.body

    assert "Data 7 days" in (await client.get("/plans?lang=en")).text
    assert "D7" in await sms_plans()
    assert "Data 7" in await ussd_plans() or "D7" in await ussd_plans()
    r = await admin.post("/console/admin/plans/D7/retire", data={"csrf": csrf, "reason": "old"})
    assert r.status_code == 303
    assert "Data 7 days" not in (await client.get("/plans?lang=en")).text
    codes = [x["code"] for x in (await client.get("/api/v1/plans")).json()]
    assert "D7" not in codes and "M30" in codes
    assert "D7" not in await sms_plans()
    screen = await ussd_plans()
    assert "Data 7" not in screen and "D7" not in screen
    page = await admin.get("/console/admin/plans")
    assert "plan.retire" in page.text
    await admin.aclose()


async def test_price_change_keeps_history_and_bought_prices(rt: Runtime,
                                                            client: httpx.AsyncClient) -> None:
    p = await person(client, rt, plan="M30")
    app = app_for(rt)
    admin, csrf = await staff_client(app, rt, Role.admin)
    r = await admin.post("/console/admin/plans/M30", data={"csrf": csrf, "amount": "60",
                                                           "zones": "cn, hk", "reason": "new season"})
    assert r.status_code == 303
    r = await admin.post("/console/admin/plans", data={
        "csrf": csrf, "code": "NEW10", "kind": "data", "name_zh": "新包", "name_en": "New pack",
        "amount": "19.9", "validity_days": "30", "data_gb": "10", "zones": "CN，MO"})
    assert r.status_code == 303, r.text
    plans = {p["code"]: p for p in (await client.get("/api/v1/plans")).json()}
    assert plans["NEW10"]["price"]["minor"] == 1990
    assert plans["NEW10"]["roaming_zones"] == ["CN", "MO"]
    assert plans["M30"]["roaming_zones"] == ["CN", "HK"]
    page = await admin.get("/console/admin/plans?lang=en")
    assert "50.00 → CN¥60.00" in page.text or ("50.00 → ¥60.00" in page.text and "new season" in page.text)
    async with unit_of_work(rt.sessions, readonly=True) as s:
        bought = (await s.scalars(select(Order.amount_minor).where(
            Order.line_id == p.line.id))).all()
    assert list(bought) == [5000]  # what the line bought keeps its price
    fresh = await order(client, p.headers, {"kind": "plan", "line_id": str(p.line.id),
                                            "plan_code": "M30"})
    assert fresh.json()["amount_minor"] == 6000
    await admin.aclose()


async def test_alipay_off_leaves_every_channel(rt: Runtime, client: httpx.AsyncClient) -> None:
    p = await person(client, rt, plan=None)
    app = app_for(rt)
    admin, csrf = await staff_client(app, rt, Role.admin)
    methods = [m["method"] for m in (await client.get("/api/v1/payment-methods")).json()]
    assert "alipay" in methods
    r = await admin.post("/console/admin/payment-methods",
                         data={"csrf": csrf, "method": "alipay", "state": "off", "reason": "outage"})
    assert r.status_code == 303
    methods = [m["method"] for m in (await client.get("/api/v1/payment-methods")).json()]
    assert "alipay" not in methods and "card" in methods
    made = await order(client, p.headers, {"kind": "plan", "line_id": str(p.line.id),
                                           "plan_code": "M30"})
    refused = await pay(client, p.headers, made.json()["id"], "alipay")
    assert refused.status_code == 422 and "payment_method_disabled" in refused.text
    # the portal's checkout no longer offers it
    page = await client.get("/login")
    portal = client
    phone = (await client.get("/api/v1/me", headers=p.headers)).json()["phone"]
    r = await portal.post("/login", data={"csrf": csrf_of(page.text), "login": phone,
                                          "password": "Harbour-Lights-2026"})
    assert r.status_code == 303, r.text
    checkout = await portal.get(f"/orders/{made.json()['id']}")
    assert checkout.status_code == 200
    assert 'value="alipay"' not in checkout.text and 'value="card"' in checkout.text
    # on again
    await admin.post("/console/admin/payment-methods",
                     data={"csrf": csrf, "method": "alipay", "state": "on"})
    methods = [m["method"] for m in (await client.get("/api/v1/payment-methods")).json()]
    assert "alipay" in methods
    await admin.aclose()


async def test_staff_accounts_roles_and_peer_keys(rt: Runtime) -> None:
    app = app_for(rt)
    admin, csrf = await staff_client(app, rt, Role.admin)
    r = await admin.post("/console/admin/staff", data={
        "csrf": csrf, "name": "New Agent", "email": "new.agent@op.example",
        "password": "Lantern-field-2026", "role": "agent"})
    assert r.status_code == 303
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    assert (await console_login(other, "new.agent@op.example", "Lantern-field-2026")).status_code == 303
    assert (await other.get("/console")).status_code == 200
    page = await admin.get("/console/admin/staff")
    staff_id = page.text.split('action="/console/admin/staff/')[1].split('"')[0]
    # deactivating ends their console sessions at once
    listed = [chunk.split('"')[0] for chunk in page.text.split('action="/console/admin/staff/')[1:]]
    for sid in listed:
        await admin.post(f"/console/admin/staff/{sid}", data={"csrf": csrf, "role": "agent",
                                                              "active": "no"})
    assert (await other.get("/console", follow_redirects=False)).status_code == 303
    assert staff_id
    r = await admin.post("/console/admin/peers", data={"csrf": csrf, "name": "pgw-1"})
    assert r.status_code == 200 and 'data-test="new-key"' in r.text
    key = r.text.split('data-test="new-key"')[1].split("<code>")[1].split("</code>")[0]
    again = await admin.get("/console/admin/peers")
    assert key not in again.text and "pgw-1" in again.text
    audit = await admin.get("/console/admin/audit", params={"action": "peer."})
    assert "peer.create" in audit.text and key not in audit.text and "staff.create" not in audit.text
    await other.aclose()
    await admin.aclose()


async def test_dashboard_has_charts_and_exports_are_csv(rt: Runtime,
                                                        client: httpx.AsyncClient) -> None:
    p = await person(client, rt, plan="M30")
    app = app_for(rt)
    admin, _ = await staff_client(app, rt, Role.admin)
    for lang in ("en", "zh-CN"):
        page = await admin.get(f"/console/admin?lang={lang}")
        assert page.status_code == 200
        assert page.text.count('data-test="chart"') == 7
        assert 'class="bar"' in page.text  # the revenue chart has the wallet payment
        assert "<script" not in page.text
    r = await admin.get("/console/admin/export/orders.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert [row["amount_minor"] for row in rows] == ["5000"] and rows[0]["state"] == "fulfilled"
    r = await admin.get("/console/admin/export/payments.csv")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert [(row["method"], row["state"]) for row in rows] == [("wallet", "succeeded")]
    assert p.line.id
    await admin.aclose()


async def test_totp_second_factor(rt: Runtime, frozen: FrozenClock) -> None:
    app = app_for(rt)
    admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    admin_email = await make_staff(rt, Role.admin)
    assert (await console_login(admin, admin_email)).status_code == 303
    csrf = csrf_of((await admin.get("/console")).text)
    await admin.post("/console/security/totp/start", data={"csrf": csrf})
    page = await admin.get("/console/security")
    assert 'data-test="totp-qr"' in page.text and "<svg" in page.text
    secret = page.text.split('data-test="totp-secret">')[1].split("<")[0]
    totp = pyotp.TOTP(secret)
    r = await admin.post("/console/security/totp/enable",
                         data={"csrf": csrf, "code": totp.at(frozen.now)})
    assert r.status_code == 303
    # log in again: the password alone leads only to the second-factor page
    fresh = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    r = await console_login(fresh, admin_email)
    assert r.status_code == 303 and "/console/second-factor" in r.headers["location"]
    assert (await fresh.get("/console", follow_redirects=False)).status_code == 303
    token = csrf_of((await fresh.get("/console/second-factor")).text)

    async def second(code: str) -> httpx.Response:
        return await fresh.post("/console/second-factor",
                                data={"csrf": token, "code": code, "next": "/console"})

    assert (await second("000000")).status_code == 422
    assert (await second(totp.at(frozen.now))).status_code == 422  # already used to enable
    frozen.advance(seconds=30)
    assert (await second(totp.at(frozen.now))).status_code == 303
    assert (await fresh.get("/console")).status_code == 200
    async with unit_of_work(rt.sessions, readonly=True) as s:
        assert (await s.scalars(select(StaffTotp))).one().enabled_at is not None
    await fresh.aclose()
    await admin.aclose()
