"""Agent console over HTTP: staff-only login, search with masked data, caller verification
before any change (every changing route refuses an unverified caller), the caller's screen,
payment links paid by the caller, wallet and bank-transfer payments, moving a misdirected
top-up, refunds with an admin's approval, notes, audited reveals and message reads."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from openmvno.accounts.models import Role
from openmvno.audit.models import AuditEvent
from openmvno.db import unit_of_work
from openmvno.notifications.models import OutboxMessage
from openmvno.orders.models import Order
from openmvno.runtime import Runtime
from tests.conftest import app_for, last_code
from tests.console.helpers import (
    Caller,
    caller,
    console_login,
    make_staff,
    outbox_bodies,
    staff_client,
)
from tests.orders.helpers import (
    order,
    reference_of,
    seed_plans,
    send_webhook,
    use_tiny_provider,
    wallet_minor,
)


async def _events(rt: Runtime, action: str) -> list[AuditEvent]:
    async with unit_of_work(rt.sessions, readonly=True) as s:
        return list((await s.scalars(select(AuditEvent).where(AuditEvent.action == action))).all())


async def _verify_by_sms(agent: httpx.AsyncClient, csrf: str, who: Caller,
                         client: httpx.AsyncClient) -> None:
    r = await agent.post(f"/console/accounts/{who.account_id}/verify/send",
                         data={"csrf": csrf, "channel": "sms"})
    assert r.status_code == 303, r.text
    code = await last_code(client, who.phone)
    r = await agent.post(f"/console/accounts/{who.account_id}/verify/code",
                         data={"csrf": csrf, "code": code})
    assert r.status_code == 303, r.text


async def _verify_by_device(agent: httpx.AsyncClient, csrf: str, who: Caller) -> None:
    r = await agent.post(f"/console/accounts/{who.account_id}/verify/device",
                         data={"csrf": csrf, "serial": who.serial, "name": who.name})
    assert r.status_code == 303, r.text


async def test_a_subscriber_cannot_log_in_to_the_console(rt: Runtime,
                                                          client: httpx.AsyncClient) -> None:
    who = await caller(client, rt)
    r = await console_login(client, who.phone, "Harbour-Lights-2026")
    assert r.status_code == 401
    assert "omv_console=" not in r.headers.get("set-cookie", "")
    r = await client.get("/console", follow_redirects=False)
    assert r.status_code == 303 and "/console/login" in r.headers["location"]


async def test_wrong_passwords_lock_the_staff_login(rt: Runtime, client: httpx.AsyncClient) -> None:
    email = await make_staff(rt, Role.agent)
    for _ in range(rt.settings.login_max_failures):
        r = await console_login(client, email, "wrong-password-1")
        assert r.status_code == 401
    r = await console_login(client, email)  # the right one, but locked now
    assert r.status_code == 429


async def test_a_form_without_its_token_is_refused(rt: Runtime, client: httpx.AsyncClient) -> None:
    app = app_for(rt)
    agent, _csrf = await staff_client(app, rt, Role.agent)
    who = await caller(client, rt)
    r = await agent.post(f"/console/accounts/{who.account_id}/verify/send",
                         data={"csrf": "forged", "channel": "sms"})
    assert r.status_code == 403
    await agent.aclose()


async def test_search_by_device_serial_shows_masked_data_and_reveal_is_audited(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    app = app_for(rt)
    agent, csrf = await staff_client(app, rt, Role.agent)
    who = await caller(client, rt, name="Zhang Xiaoming")
    page = await agent.get("/console", params={"q": who.serial.lower()})
    assert page.status_code == 200
    assert f"/console/accounts/{who.account_id}" in page.text
    assert who.phone not in page.text and "Zhang Xiaoming" not in page.text
    assert "Z**** X*******" in page.text
    for query in (who.msisdn, who.phone[3:], ):
        found = await agent.get("/console", params={"q": query})
        assert f"/console/accounts/{who.account_id}" in found.text, query
    screen = await agent.get(f"/console/accounts/{who.account_id}")
    assert who.phone not in screen.text
    assert 'data-test="not-verified"' in screen.text
    r = await agent.post(f"/console/accounts/{who.account_id}/reveal",
                         data={"csrf": csrf, "field": "phone", "reason": "caller asks"})
    assert r.status_code == 200 and who.phone in r.text
    events = await _events(rt, "account.reveal")
    assert [(e.account_id, e.data["field"], e.reason) for e in events] == [
        (who.account_id, "phone", "caller asks")]
    await agent.aclose()


CHANGING = [
    ("payment-link", {"kind": "topup", "amount": "50", "channel": "sms"}),
    ("orders", {"plan": "M30"}),
    ("notes", {"note": "called about roaming"}),
    ("orders/{order}/wallet", {}),
    ("orders/{order}/bank-transfer", {"reference": "BANK-1", "reason": "paid at the bank"}),
    ("orders/{order}/cancel", {"reason": "caller asked"}),
    ("orders/{paid}/move", {"msisdn": "+8613700000000", "reason": "wrong number"}),
    ("orders/{paid}/refund", {"reason": "goodwill"}),
]


async def test_nothing_changes_for_an_unverified_caller(rt: Runtime, client: httpx.AsyncClient) -> None:
    await seed_plans(rt)
    app = app_for(rt)
    agent, csrf = await staff_client(app, rt, Role.admin)  # even an admin must verify
    who = await caller(client, rt)
    pending = await order(client, who.headers, {"kind": "plan", "line_id": str(who.line_id),
                                                "plan_code": "M30"})
    paid = await order(client, who.headers, {"kind": "topup", "amount_minor": 5000})
    ids = {"order": pending.json()["id"], "paid": paid.json()["id"]}
    async with unit_of_work(rt.sessions, readonly=True) as s:
        before_orders = len((await s.scalars(select(Order))).all())
    for path, data in CHANGING:
        url = f"/console/accounts/{who.account_id}/" + path.format(**ids)
        r = await agent.post(url, data={"csrf": csrf, "line_id": str(who.line_id), **data})
        assert r.status_code == 403, (path, r.status_code)
        assert "Verify the caller" in r.text or "验证" in r.text
    async with unit_of_work(rt.sessions, readonly=True) as s:
        assert len((await s.scalars(select(Order))).all()) == before_orders
    assert await wallet_minor(rt, who.account_id) == 20000
    assert await _events(rt, "order.cancel") == []
    await agent.aclose()


async def test_device_serial_and_name_verify_for_15_minutes(
    rt: Runtime, client: httpx.AsyncClient, frozen: object
) -> None:
    app = app_for(rt)
    agent, csrf = await staff_client(app, rt, Role.agent)
    who = await caller(client, rt, name="Han Meimei")
    url = f"/console/accounts/{who.account_id}"
    r = await agent.post(url + "/verify/device",
                         data={"csrf": csrf, "serial": who.serial, "name": "Wrong Name"})
    assert r.status_code == 422
    r = await agent.post(url + "/verify/device",
                         data={"csrf": csrf, "serial": who.serial.lower(), "name": "han  meimei"})
    assert r.status_code == 303
    assert 'data-test="verified"' in (await agent.get(url)).text
    frozen.advance(minutes=16)  # type: ignore[attr-defined]
    r = await agent.post(url + "/verify/device",
                         data={"csrf": csrf, "serial": who.serial, "name": who.name})
    # the console session idles out after 30 minutes; at 16 it is still on
    assert r.status_code == 303
    frozen.advance(minutes=16)  # type: ignore[attr-defined]
    screen = await agent.get(url)
    assert 'data-test="not-verified"' in screen.text
    await agent.aclose()


async def test_payment_link_by_sms_is_paid_by_the_caller_and_the_agent_sees_it(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    await seed_plans(rt)
    provider = use_tiny_provider(rt)
    app = app_for(rt)
    agent, csrf = await staff_client(app, rt, Role.agent)
    who = await caller(client, rt)
    await _verify_by_sms(agent, csrf, who, client)
    r = await agent.post(f"/console/accounts/{who.account_id}/payment-link", data={
        "csrf": csrf, "line_id": str(who.line_id), "kind": "plan", "plan": "M30",
        "channel": "sms"})
    assert r.status_code == 303, r.text
    order_url = r.headers["location"].split("?")[0]
    page = await agent.get(order_url)
    assert 'data-test="refreshing"' in page.text and 'http-equiv="refresh"' in page.text
    link = next(b for b in await outbox_bodies(client, who.phone) if "/topup/orders/" in b)
    token = re.search(r"/topup/orders/([A-Za-z0-9_\-]+)", link)
    assert token
    # the caller opens the link on their phone (no login) and pays by card
    opened = await client.get(f"/topup/orders/{token.group(1)}")
    assert opened.status_code == 200
    started = await client.post(f"/api/v1/guest/orders/{token.group(1)}/payments",
                                json={"method": "card"})
    assert started.status_code == 201, started.text
    r = await send_webhook(client, provider, reference_of(started), "succeeded")
    assert r.status_code == 200, r.text
    page = await agent.get(order_url)
    assert "Paid" in page.text and 'data-test="refreshing"' not in page.text
    assert await wallet_minor(rt, who.account_id) == 20000  # paid by card, not the wallet
    assert [e.data["channel"] for e in await _events(rt, "console.payment_link")] == ["sms"]
    await agent.aclose()


async def test_wallet_payment_and_bank_transfer_need_permission(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    await seed_plans(rt)
    app = app_for(rt)
    agent, csrf = await staff_client(app, rt, Role.agent)
    who = await caller(client, rt)
    await _verify_by_sms(agent, csrf, who, client)
    r = await agent.post(f"/console/accounts/{who.account_id}/orders",
                         data={"csrf": csrf, "line_id": str(who.line_id), "plan": "M30"})
    assert r.status_code == 303
    order_url = r.headers["location"]
    r = await agent.post(order_url + "/bank-transfer",
                         data={"csrf": csrf, "reference": "ICBC-778", "reason": "paid"})
    assert r.status_code == 403  # agents may not record bank transfers (the default)
    r = await agent.post(order_url + "/wallet", data={"csrf": csrf})
    assert r.status_code == 303
    assert await wallet_minor(rt, who.account_id) == 15000
    [event] = await _events(rt, "console.wallet_payment")
    assert event.data["before"]["wallet_minor"] == 20000
    assert event.data["after"]["wallet_minor"] == 15000
    # an admin records a bank transfer with its reference, once
    admin, admin_csrf = await staff_client(app, rt, Role.admin)
    await _verify_by_device(admin, admin_csrf, who)
    r = await admin.post(f"/console/accounts/{who.account_id}/orders",
                         data={"csrf": admin_csrf, "line_id": str(who.line_id), "plan": "D7"})
    second = r.headers["location"]
    r = await admin.post(second + "/bank-transfer",
                         data={"csrf": admin_csrf, "reference": "ICBC-778", "reason": "paid"})
    assert r.status_code == 303
    assert "Paid" in (await admin.get(second)).text
    [bank] = await _events(rt, "console.bank_transfer")
    assert bank.data["reference"] == "ICBC-778"
    await agent.aclose()
    await admin.aclose()


async def test_misdirected_topup_moves_with_both_notified_and_one_audit_event(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    app = app_for(rt)
    agent, csrf = await staff_client(app, rt, Role.agent)
    wrong = await caller(client, rt, name="Wrong Person", wallet=0)
    right = await caller(client, rt, name="Right Person", wallet=1000)
    # a guest tops up the wrong number
    looked = await client.post("/api/v1/guest/topup/lookup", json={"msisdn": wrong.msisdn})
    assert looked.status_code == 200, looked.text
    provider = use_tiny_provider(rt)
    made = await order(client, None, {"kind": "guest_topup", "msisdn": wrong.msisdn,
                                      "amount_minor": 5000})
    assert made.status_code == 201, made.text
    token = made.json().get("guest_token")
    assert token, made.json()
    started = await client.post(f"/api/v1/guest/orders/{token}/payments", json={"method": "card"})
    await send_webhook(client, provider, reference_of(started), "succeeded")
    assert await wallet_minor(rt, wrong.account_id) == 5000
    # the payer calls; the agent finds the order by its number
    number = made.json()["number"]
    found = await agent.get("/console", params={"q": number})
    assert f"/console/accounts/{wrong.account_id}" in found.text
    await _verify_by_sms(agent, csrf, wrong, client)
    url = f"/console/accounts/{wrong.account_id}/orders/{made.json()['id']}"
    r = await agent.post(url + "/move", data={"csrf": csrf, "msisdn": right.msisdn,
                                              "reason": "payer typed a wrong digit"})
    assert r.status_code == 303, r.text
    assert await wallet_minor(rt, wrong.account_id) == 0
    assert await wallet_minor(rt, right.account_id) == 6000
    [event] = await _events(rt, "topup.moved")
    assert event.reason == "payer typed a wrong digit"
    assert event.data["before"] == {"from_wallet_minor": 5000, "to_wallet_minor": 1000}
    assert event.data["after"] == {"from_wallet_minor": 0, "to_wallet_minor": 6000}
    r = await agent.post(url + "/move", data={"csrf": csrf, "msisdn": right.msisdn,
                                              "reason": "again"})
    assert r.status_code == 409  # once only
    async with unit_of_work(rt.sessions, readonly=True) as s:
        rows = (await s.scalars(select(OutboxMessage).where(
            OutboxMessage.account_id.in_([wrong.account_id, right.account_id])))).all()
    texts = " ".join(m.body for m in rows)
    assert "moved to" in texts or "转入" in texts or right.msisdn in texts
    assert wrong.msisdn in texts or "by mistake" in texts or "误" in texts
    await agent.aclose()


async def test_refund_above_the_approval_amount_waits_for_an_admin(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    await seed_plans(rt)
    rt.settings.console_refund_approval_minor = 1000
    app = app_for(rt)
    agent, csrf = await staff_client(app, rt, Role.agent)
    who = await caller(client, rt)
    await _verify_by_sms(agent, csrf, who, client)
    r = await agent.post(f"/console/accounts/{who.account_id}/orders",
                         data={"csrf": csrf, "line_id": str(who.line_id), "plan": "M30"})
    order_url = r.headers["location"]
    await agent.post(order_url + "/wallet", data={"csrf": csrf})
    assert await wallet_minor(rt, who.account_id) == 15000
    r = await agent.post(order_url + "/refund", data={"csrf": csrf, "reason": "did not work"})
    assert r.status_code == 303 and "refund_requested" in r.headers["location"]
    assert await wallet_minor(rt, who.account_id) == 15000
    admin, admin_csrf = await staff_client(app, rt, Role.admin)
    listed = await admin.get("/console/admin/refunds")
    [event] = await _events(rt, "refund.requested")
    assert str(event.id) in listed.text
    r = await admin.post(f"/console/admin/refunds/{event.id}/approve",
                         data={"csrf": admin_csrf, "reason": "ok"})
    assert r.status_code == 303
    assert await wallet_minor(rt, who.account_id) == 20000
    await agent.aclose()
    await admin.aclose()


async def test_messages_hide_codes_and_reading_them_is_audited(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    app = app_for(rt)
    agent, csrf = await staff_client(app, rt, Role.agent)
    who = await caller(client, rt)
    await _verify_by_sms(agent, csrf, who, client)
    r = await agent.post(f"/console/accounts/{who.account_id}/notes",
                         data={"csrf": csrf, "note": "asked how to check the balance"})
    assert r.status_code == 303
    screen = await agent.get(f"/console/accounts/{who.account_id}")
    assert "asked how to check the balance" in screen.text
    page = await agent.get(f"/console/accounts/{who.account_id}/messages")
    assert page.status_code == 200
    code = await last_code(client, who.phone)
    assert code not in page.text
    assert 'data-test="hidden-code"' in page.text
    assert len(await _events(rt, "account.messages_read")) == 1
    await agent.aclose()



