"""Console test helpers: staff logins over HTTP, a subscriber with a line and a device,
CSRF tokens read from the pages, codes read from the dev outbox."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import httpx
from sqlalchemy import select, update

from openmvno.accounts import service as accounts
from openmvno.accounts.models import Role
from openmvno.db import unit_of_work
from openmvno.lines.models import Line
from openmvno.runtime import Runtime
from tests.orders.helpers import fund_wallet, give_line, subscriber

STAFF_PASSWORD = "Staff-pass-2026"
CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:500]
    return found.group(1)


async def make_staff(rt: Runtime, role: Role, name: str = "Agent Wang") -> str:
    email = f"{role.value}-{uuid.uuid4().hex[:8]}@op.example"
    async with unit_of_work(rt.sessions) as s:
        await accounts.create_staff(s, rt, name=name, email=email, password=STAFF_PASSWORD,
                                    role=role)
    return email


async def console_login(client: httpx.AsyncClient, login: str,
                        password: str = STAFF_PASSWORD) -> httpx.Response:
    page = await client.get("/console/login")
    return await client.post("/console/login", data={
        "csrf": csrf_of(page.text), "login": login, "password": password, "next": "/console"})


async def staff_client(app: object, rt: Runtime, role: Role) -> tuple[httpx.AsyncClient, str]:
    """A logged-in console client and its CSRF token."""
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                          base_url="http://testserver")
    email = await make_staff(rt, role)
    r = await console_login(c, email)
    assert r.status_code == 303, r.text
    page = await c.get("/console")
    assert page.status_code == 200, page.text
    return c, csrf_of(page.text)


@dataclass
class Caller:
    account_id: uuid.UUID
    phone: str
    line_id: uuid.UUID
    msisdn: str
    serial: str
    name: str
    headers: dict[str, str]


async def caller(client: httpx.AsyncClient, rt: Runtime, *, name: str = "Li Lei",
                 wallet: int = 20000) -> Caller:
    headers, account_id = await subscriber(client, name=name)
    line = await give_line(rt, account_id)
    serial = f"DC{uuid.uuid4().int % 10**10:010d}"
    async with unit_of_work(rt.sessions) as s:
        await s.execute(update(Line).where(Line.id == line.id).values(device_serial=serial))
    if wallet:
        await fund_wallet(rt, account_id, wallet)
    return Caller(account_id, headers["X-Phone"], line.id, line.msisdn, serial, name, headers)


async def outbox_bodies(client: httpx.AsyncClient, recipient: str) -> list[str]:
    r = await client.get("/dev/outbox", headers={"Accept": "application/json"})
    return [m["body"] for m in r.json()["messages"] if m["recipient"] == recipient]


async def console_session(rt: Runtime, c: httpx.AsyncClient, login: str,
                          caller_id: uuid.UUID) -> str:
    """Log ``c`` (a staff member) into the console with a verified caller ``caller_id``;
    returns the console CSRF token (for the role matrix)."""
    from datetime import timedelta

    from openmvno import clock
    from openmvno.accounts.models import Account
    from openmvno.staff.models import CallerVerification

    r = await console_login(c, login)
    assert r.status_code == 303, r.text
    async with unit_of_work(rt.sessions) as s:
        staff_id = (await s.scalars(select(Account.id).where(Account.email == login))).one()
        s.add(CallerVerification(staff_id=staff_id, account_id=caller_id, method="test",
                                 verified_at=clock.now(),
                                 expires_at=clock.now() + timedelta(hours=2)))
    page = await c.get("/console")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


async def console_world(rt: Runtime, caller_id: uuid.UUID, order_id: str) -> dict[str, str]:
    """Objects the console routes name: the caller, a staff member, a peer, a refund
    request (for the role matrix)."""
    from openmvno.accounts.models import Account
    from openmvno.audit import service as audit
    from openmvno.usage import peers

    async with unit_of_work(rt.sessions) as s:
        staff_id = (await s.scalars(select(Account.id).where(Account.role == Role.agent))).first()
        peer, _key = await peers.create(s, name=f"matrix-{uuid.uuid4().hex[:6]}")
        event = await audit.record(s, actor=staff_id, action="refund.requested",
                                   subject_type="order", subject_id=order_id,
                                   account_id=caller_id, reason="matrix")
    return {"account_id": str(caller_id), "staff_id": str(staff_id), "name": peer.name,
            "event_id": str(event.id), "what": "orders"}
