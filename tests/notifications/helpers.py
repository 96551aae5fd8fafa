"""Subscribers and lines made directly in the database (no argon2, no API round trips)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select

from openmvno.accounts.models import Account
from openmvno.db import unit_of_work
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.notifications.models import OutboxMessage
from openmvno.runtime import Runtime


async def account(
    rt: Runtime, *, language: str = "zh-CN", phone: str | None = "auto",
    email: str | None = None, name: str = "李雷",
) -> uuid.UUID:
    n = uuid.uuid4().int % 10**8
    acc = Account(name=name, phone=f"+86138{n:08d}" if phone == "auto" else phone,
                  email=email, password_hash="x", language=language)
    async with unit_of_work(rt.sessions) as s:
        s.add(acc)
    return acc.id


async def line(
    rt: Runtime, account_id: uuid.UUID, *, expires_at: datetime | None = None,
    state: LineState = LineState.active, auto_renew: bool = False,
    plan_id: uuid.UUID | None = None,
) -> Line:
    i = uuid.uuid4().int % 10**9
    row = Line(kind=LineKind.sim, iccid=f"8986009{i:012d}", msisdn=f"+86172{i % 10**8:08d}",
               account_id=account_id, state=state, expires_at=expires_at,
               auto_renew=auto_renew, plan_id=plan_id)
    async with unit_of_work(rt.sessions) as s:
        s.add(row)
    return row


async def outbox(rt: Runtime) -> list[OutboxMessage]:
    async with unit_of_work(rt.sessions) as s:
        rows = await s.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at,
                                                              OutboxMessage.kind))
        return list(rows.all())
