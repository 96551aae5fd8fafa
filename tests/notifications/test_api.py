"""The API: my notification preferences, and the admins' notice templates (validated,
previewed, audited, used by the next notice)."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from openmvno.accounts.models import Role
from openmvno.audit.models import AuditEvent
from openmvno.db import unit_of_work
from openmvno.notifications import notices
from openmvno.runtime import Runtime
from tests.catalog.helpers import staff_headers
from tests.conftest import register_and_login
from tests.notifications.helpers import account, outbox

URL = "/api/v1/me/notification-preferences"
TEMPLATES = "/api/v1/admin/notice-templates"


async def test_preferences_default_change_and_refuse_all_off(
    client: httpx.AsyncClient,
) -> None:
    headers = await register_and_login(client, email="pref@example.com")
    headers.pop("X-Phone")
    r = await client.get(URL, headers=headers)
    assert r.json() == {"sms": True, "email": True, "marketing": False, "has_phone": True,
                        "has_email": True}
    r = await client.put(URL, headers=headers, json={"sms": False, "marketing": True})
    assert r.status_code == 200, r.text
    assert r.json()["sms"] is False and r.json()["marketing"] is True
    assert (await client.get(URL, headers=headers)).json()["sms"] is False
    r = await client.put(URL, headers={**headers, "Accept-Language": "zh-CN"},
                         json={"email": False})
    assert r.status_code == 422
    assert r.json()["code"] == "notices_need_a_channel"
    assert "无法关闭" in r.json()["detail"]
    r = await client.put(URL, headers=headers, json={"sms": "yes"})
    assert r.status_code == 422
    assert (await client.get(URL, headers=headers)).json()["email"] is True


async def test_templates_listed_validated_previewed_audited_and_used(
    rt: Runtime, client: httpx.AsyncClient,
) -> None:
    admin = await staff_headers(client, rt, Role.admin)
    agent = await staff_headers(client, rt, Role.agent)
    assert (await client.get(TEMPLATES, headers=agent)).status_code == 403
    listed = (await client.get(TEMPLATES, headers=admin)).json()
    assert {e["event"] for e in listed} == set(notices.EVENTS)
    reminder = next(e for e in listed if e["event"] == "expiry_reminder")
    assert "days_left" in reminder["placeholders"] and "amount" in reminder["placeholders"]
    assert len(reminder["texts"]) == 4 and not any(t["custom"] for t in reminder["texts"])

    url = f"{TEMPLATES}/wallet_low/en"
    r = await client.put(url, headers=admin, json={"channel": "sms", "body": "Low: {balanse}"})
    assert r.status_code == 422 and r.json()["code"] == "template_unknown_placeholder"
    assert "balanse" in r.json()["detail"] and "balance" in r.json()["detail"]
    r = await client.put(url, headers=admin, json={"channel": "sms", "body": "x {balance.x}"})
    assert r.status_code == 422 and r.json()["code"] == "template_invalid"
    r = await client.put(url, headers=admin, json={"channel": "sms", "body": "x {"})
    assert r.status_code == 422 and r.json()["code"] == "template_invalid"
    r = await client.put(f"{TEMPLATES}/no_such/en", headers=admin,
                         json={"channel": "sms", "body": "x"})
    assert r.status_code == 404
    r = await client.put(f"{TEMPLATES}/wallet_low/fr", headers=admin,
                         json={"channel": "sms", "body": "x"})
    assert r.status_code == 422
    assert (await client.put(url, headers=agent,
                             json={"channel": "sms", "body": "x"})).status_code == 403

    r = await client.put(url, headers=admin, json={
        "channel": "sms", "body": "{operator}: only {balance} left, {name}. {{top up}}"})
    assert r.status_code == 200, r.text
    assert r.json()["sample_body"] == "OpenMVNO Demo Mobile: only CN¥5.00 left, Li Lei. {top up}"
    async with unit_of_work(rt.sessions) as s:
        events = (await s.scalars(select(AuditEvent).where(
            AuditEvent.action == "notice_template.set"))).all()
    assert [e.subject_id for e in events] == ["wallet_low/en/sms"]

    a = await account(rt, language="en", name="Han Meimei")
    zh = await account(rt, language="zh-CN")
    async with unit_of_work(rt.sessions) as s:
        for who in (a, zh):
            await notices.notify(s, account_id=who, event="wallet_low", key=f"w:{who}",
                                 params={"balance_minor": 120, "currency": "CNY"}, urgent=True)
    bodies = {m.account_id: m.body for m in await outbox(rt)}
    assert bodies[a] == "OpenMVNO Demo Mobile: only CN¥1.20 left, Han Meimei. {top up}"
    assert bodies[zh].startswith("【OpenMVNO Demo Mobile】您的钱包余额为¥1.20")  # zh untouched
    custom = [t for e in (await client.get(TEMPLATES, headers=admin)).json()
              if e["event"] == "wallet_low" for t in e["texts"] if t["custom"]]
    assert custom == [{"language": "en", "channel": "sms", "subject": "",
                       "body": "{operator}: only {balance} left, {name}. {{top up}}",
                       "custom": True}]


async def test_an_own_text_is_reset_to_the_built_in_one(
    rt: Runtime, client: httpx.AsyncClient,
) -> None:
    admin = await staff_headers(client, rt, Role.admin)
    agent = await staff_headers(client, rt, Role.agent)
    r = await client.put(f"{TEMPLATES}/suspended/zh-CN", headers=admin,
                         json={"channel": "sms", "body": "{msisdn} 停机了"})
    assert r.status_code == 200, r.text
    url = f"{TEMPLATES}/suspended/zh-CN/sms"
    assert (await client.delete(url, headers=agent)).status_code == 403
    assert (await client.delete(f"{TEMPLATES}/nope/zh-CN/sms", headers=admin)).status_code == 404
    assert (await client.delete(url, headers=admin)).status_code == 204
    assert (await client.delete(url, headers=admin)).status_code == 204  # nothing left: fine
    listed = (await client.get(TEMPLATES, headers=admin)).json()
    assert not any(t["custom"] for e in listed for t in e["texts"])
    a = await account(rt, language="zh-CN")
    async with unit_of_work(rt.sessions) as s:
        await notices.notify(s, account_id=a, event="suspended", key=f"suspended:{a}",
                             params={}, urgent=True)
    (sms,) = await outbox(rt)
    assert sms.body.startswith("【OpenMVNO Demo Mobile】您的号码") and "续费后立即复机" in sms.body
    async with unit_of_work(rt.sessions) as s:
        actions = [e.action for e in (await s.scalars(select(AuditEvent).where(
            AuditEvent.subject_type == "notice_template")))]
    assert sorted(actions) == ["notice_template.reset", "notice_template.set"]
