"""A phone and our back office over a real SMPP link (the npm ``smpp`` SMSC): commands in
by ``deliver_sm``, replies and notices out by ``submit_sm``, receipts back."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import select

from openmvno import clock
from openmvno.adapters.sms.smpp import Inbound
from openmvno.adapters.sms.smpp_models import PartState, SmsPart
from openmvno.channels.sms.commands import handle
from openmvno.db import unit_of_work
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.notifications.notices import notify
from openmvno.runtime import Runtime
from tests.orders.helpers import wallet_minor
from tests.sms.conftest import Start
from tests.sms.helpers import person
from tests.sms.peer import Smsc, until


def channel(rt: Runtime):  # type: ignore[no-untyped-def]
    async def on_inbound(message: Inbound) -> None:
        await handle(rt, sender=message.sender, text=message.text, channel="smpp")

    return on_inbound


async def test_bal_texted_to_the_short_code_comes_back_with_the_api_balance_and_a_receipt(
    smpp_rt: Runtime, smsc: Smsc, start_sender: Start, client: httpx.AsyncClient
) -> None:
    p = await person(client, smpp_rt)
    await start_sender(on_inbound=channel(smpp_rt))
    await smsc.send(cmd="mo", **{"from": p.msisdn.lstrip("+"), "to": "10086", "text": "BAL"})
    resp = await smsc.wait_for(lambda e: e["event"] == "mo_resp")
    assert resp["status"] == 0  # the SMSC got deliver_sm_resp only after we took it
    reply = await smsc.wait_for(lambda e: e["event"] == "message"
                                and e["to"] == p.msisdn.lstrip("+"))
    api = (await client.get(f"/api/v1/lines/{p.line.id}/balance",
                            headers={**p.headers, "Accept-Language": "en"})).json()
    assert api["wallet"]["balance_text"] in reply["text"]
    for total in api["totals"]:
        assert total["remaining_text"] in reply["text"]
    assert api["expires_at_text"] in reply["text"]
    await smsc.wait_for(lambda e: e["event"] == "receipt" and e["to"] == p.msisdn.lstrip("+"))

    async def delivered() -> bool:
        async with unit_of_work(smpp_rt.sessions) as s:
            parts = (await s.scalars(select(SmsPart).where(
                SmsPart.recipient == p.msisdn))).all()
            return bool(parts) and all(x.state == PartState.delivered for x in parts)

    assert await until(delivered)


async def test_buy_and_yes_in_chinese_over_smpp_changes_the_balance(
    smpp_rt: Runtime, smsc: Smsc, start_sender: Start, client: httpx.AsyncClient
) -> None:
    p = await person(client, smpp_rt, language="zh-CN", plan=None)
    await start_sender(on_inbound=channel(smpp_rt))
    number = p.msisdn.lstrip("+")
    await smsc.send(cmd="mo", **{"from": number, "to": "10086", "text": "ＢＵＹ Ｄ７"})
    ask = await smsc.wait_for(lambda e: e["event"] == "message" and e["to"] == number)
    assert "¥15.00" in ask["text"] and "7 天" in ask["text"] and ask["dcs"] == 8
    await smsc.send(cmd="mo", **{"from": number, "to": "10086", "text": "是"})
    done = await smsc.wait_for(lambda e: e["event"] == "message" and e["to"] == number, count=2)
    assert done["text"].startswith("购买成功")
    assert await wallet_minor(smpp_rt, p.account_id) == 18500


async def test_a_verification_code_and_a_renewal_reminder_reach_the_phone(
    smpp_rt: Runtime, smsc: Smsc, start_sender: Start, client: httpx.AsyncClient
) -> None:
    await start_sender()
    phone = f"+86139{uuid.uuid4().int % 10**8:08d}"
    r = await client.post("/api/v1/auth/register",
                          json={"name": "Wang Wu", "phone": phone, "password": "Harbour-Lights-2026"})
    assert r.status_code == 201, r.text
    code_sms = await smsc.wait_for(lambda e: e["event"] == "message"
                                   and e["to"] == phone.lstrip("+"))
    code = await _code_in(code_sms["text"])
    assert code
    r = await client.post("/api/v1/auth/verify", json={"login": phone, "code": code})
    assert r.status_code == 200, r.text

    p = await person(client, smpp_rt)
    async with unit_of_work(smpp_rt.sessions) as s:
        queued = await notify(
            s, account_id=p.account_id, event="expiry_reminder", urgent=True,
            key=f"expiry_reminder:{p.line.id}:test:3", line_id=p.line.id,
            params={"days_left": 3, "plan": "Enjoy 30 days",
                    "expires_at": clock.now() + timedelta(days=3), "amount_minor": 5000,
                    "currency": "CNY", "auto_renew": False})
    assert queued
    # Notices go to the account's own phone (the one it registered with).
    reminder = await smsc.wait_for(lambda e: e["event"] == "message"
                                   and "¥50.00" in e["text"])
    assert "Enjoy 30 days" in reminder["text"] and "¥50.00" in reminder["text"]

    async def sent() -> bool:
        async with unit_of_work(smpp_rt.sessions) as s:
            rows = (await s.scalars(select(OutboxMessage).where(
                OutboxMessage.kind == OutboxKind.sms))).all()
            return bool(rows) and all(m.state == OutboxState.sent for m in rows)

    assert await until(sent)
    # The code's body is not kept once the SMSC has it.
    async with unit_of_work(smpp_rt.sessions) as s:
        bodies = (await s.scalars(select(OutboxMessage.body).where(
            OutboxMessage.recipient == phone))).all()
    assert all(code not in b for b in bodies)


async def _code_in(text: str) -> str:
    import re

    found = re.search(r"\b(\d{6})\b", text)
    return found.group(1) if found else ""
