"""A subscriber with a line, a plan and a wallet, and reading SMS replies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
from sqlalchemy import select, update

from openmvno.accounts.models import Account
from openmvno.db import unit_of_work
from openmvno.lines.models import Line
from openmvno.notifications.models import OutboxKind, OutboxMessage
from openmvno.runtime import Runtime
from tests.orders.helpers import fund_wallet, give_line, order, pay, seed_plans


@dataclass
class Person:
    headers: dict[str, str]
    account_id: uuid.UUID
    line: Line

    @property
    def msisdn(self) -> str:
        return self.line.msisdn


async def person(client: httpx.AsyncClient, rt: Runtime, *, language: str = "en",
                 wallet: int = 20000, plan: str | None = "M30", seed: bool = True) -> Person:
    if seed:
        await seed_plans(rt)
    headers, account_id = await registered(client, rt)
    line = await give_line(rt, account_id)
    async with unit_of_work(rt.sessions) as s:
        await s.execute(update(Account).where(Account.id == account_id).values(language=language))
    if wallet:
        await fund_wallet(rt, account_id, wallet)
    if plan:
        r = await order(client, headers, {"kind": "plan", "line_id": str(line.id),
                                          "plan_code": plan})
        assert r.status_code == 201, r.text
        assert (await pay(client, headers, r.json()["id"], "wallet")).status_code in (200, 201)
    return Person(headers, account_id, line)


async def replies_to(rt: Runtime, number: str) -> list[str]:
    """SMS queued to ``number``, oldest first."""
    async with unit_of_work(rt.sessions) as s:
        rows = await s.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == OutboxKind.sms, OutboxMessage.recipient == number)
            .order_by(OutboxMessage.created_at, OutboxMessage.id))
        return [m.body for m in rows.all()]


async def registered(client: httpx.AsyncClient, rt: Runtime) -> tuple[dict[str, str], uuid.UUID]:
    """A verified, logged-in subscriber; the code is read from the outbox row itself (over
    SMPP there is no dev outbox page)."""
    import re

    phone = f"+86138{uuid.uuid4().int % 10**8:08d}"
    password = "Harbour-Lights-2026"
    r = await client.post("/api/v1/auth/register",
                          json={"name": "Li Lei", "phone": phone, "password": password})
    assert r.status_code == 201, r.text
    found = re.search(r"\b(\d{6})\b", (await replies_to(rt, phone))[-1])
    assert found
    r = await client.post("/api/v1/auth/verify", json={"login": phone, "code": found.group(1)})
    assert r.status_code == 200, r.text
    r = await client.post("/api/v1/auth/token", json={"login": phone, "password": password})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    me = await client.get("/api/v1/me", headers=headers)
    return headers, uuid.UUID(me.json()["id"])
