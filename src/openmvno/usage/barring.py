"""Barring a line's data at the network when it runs out, and lifting the bar.

A line whose data runs out with nothing to pay for more (overage ``block``, no roaming
rate, or an empty wallet) is barred: a ``line_bars`` row (``barred``), a provisioning
job ``bar_data`` through the outbox and a ``line_barred`` notice. When the line is
topped up or renewed, :func:`lift_if_barred` lifts it: ``unbar_data`` and
``line_unbarred``. Each bar has its own ``generation``, so the outbox dedupe keys
(``usage-bar:<line>:<generation>``, ``usage-unbar:<line>:<generation>``) make every job
exactly once, and a bar that is already on is not barred again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.adapters.provisioning import BarringRequest, provisioner
from openmvno.db import Base, unit_of_work
from openmvno.lines.models import Line
from openmvno.notifications.models import OutboxKind, OutboxMessage
from openmvno.runtime import Runtime
from openmvno.usage import notify
from openmvno.usage.models import LineBar

BARS: Table = Base.metadata.tables[LineBar.__tablename__]
OUTBOX: Table = Base.metadata.tables[OutboxMessage.__tablename__]
LINES: Table = Base.metadata.tables[Line.__tablename__]


@dataclass(frozen=True, slots=True)
class BarTarget:
    line_id: uuid.UUID
    account_id: uuid.UUID
    msisdn: str
    iccid: str
    reason: str


def _insert(session: AsyncSession, table: Table) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _job(line_id: uuid.UUID, account_id: uuid.UUID, msisdn: str, iccid: str, action: str,
         generation: int) -> dict[str, Any]:
    now = clock.now()
    prefix = "usage-bar" if action == "bar_data" else "usage-unbar"
    return {
        "id": uuid.uuid4(), "kind": OutboxKind.line_barring,
        "dedupe_key": f"{prefix}:{line_id}:{generation}", "account_id": account_id,
        "recipient": msisdn, "subject": "", "body": "",
        "payload": {"action": action, "line_id": str(line_id), "iccid": iccid,
                    "msisdn": msisdn, "generation": generation},
        "state": "pending", "attempts": 0, "next_attempt_at": now, "claimed_until": None,
        "last_error": "", "created_at": now, "sent_at": None,
    }


async def bar_lines(session: AsyncSession, targets: Sequence[BarTarget]) -> int:
    """Bar the data of ``targets`` not barred yet (set-based); returns how many were."""
    if not targets:
        return 0
    now = clock.now()
    by_line = {t.line_id: t for t in targets}
    stmt = _insert(session, BARS).values([
        {"line_id": t.line_id, "account_id": t.account_id, "barred": True, "generation": 1,
         "barred_at": now, "lifted_at": None, "detail": {"reason": t.reason}}
        for t in by_line.values()
    ])
    stmt = stmt.on_conflict_do_update(
        index_elements=["line_id"],
        set_={"barred": True, "generation": BARS.c.generation + 1, "barred_at": now,
              "lifted_at": None, "detail": stmt.excluded.detail},
        where=BARS.c.barred.is_(False),
    ).returning(BARS.c.line_id, BARS.c.generation)
    barred = (await session.execute(stmt)).all()
    if not barred:
        return 0
    jobs = []
    notices = []
    for line_id, generation in barred:
        t = by_line[line_id]
        jobs.append(_job(t.line_id, t.account_id, t.msisdn, t.iccid, "bar_data", generation))
        notices.append(notify.UsageNotice(
            account_id=t.account_id, event="line_barred", line_id=t.line_id,
            key=f"line_barred:{t.line_id}:{generation}", params={"reason": t.reason},
            urgent=True,
        ))
    await session.execute(
        _insert(session, OUTBOX).values(jobs).on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    await notify.send(session, notices)
    return len(barred)


async def lift_if_barred(session: AsyncSession, line_id: uuid.UUID) -> bool:
    """Lift the data bar of ``line_id`` if it has one (a top-up or renewal just granted
    something): an ``unbar_data`` job and a ``line_unbarred`` notice. False if not barred."""
    row = (await session.execute(
        update(BARS)
        .where(BARS.c.line_id == line_id, BARS.c.barred.is_(True))
        .values(barred=False, lifted_at=clock.now())
        .returning(BARS.c.account_id, BARS.c.generation)
    )).first()
    if row is None:
        return False
    line = (await session.execute(
        select(LINES.c.msisdn, LINES.c.iccid).where(LINES.c.id == line_id)
    )).one()
    account_id, generation = row
    await session.execute(
        _insert(session, OUTBOX)
        .values([_job(line_id, account_id, line.msisdn, line.iccid, "unbar_data", generation)])
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    await notify.send(session, [notify.UsageNotice(
        account_id=account_id, event="line_unbarred", line_id=line_id,
        key=f"line_unbarred:{line_id}:{generation}", params={},
    )])
    return True


async def lift_account_bars(session: AsyncSession, account_id: uuid.UUID) -> int:
    """Lift every bar on the account's lines (its wallet was topped up)."""
    ids = (await session.execute(
        select(BARS.c.line_id).where(BARS.c.account_id == account_id, BARS.c.barred.is_(True))
    )).scalars().all()
    lifted = 0
    for line_id in ids:
        lifted += await lift_if_barred(session, line_id)
    return lifted


async def is_barred(session: AsyncSession, line_id: uuid.UUID) -> bool:
    found = await session.scalar(select(BARS.c.barred).where(BARS.c.line_id == line_id))
    return bool(found)


async def deliver(rt: Runtime, message: OutboxMessage) -> str:
    """Outbox handler for ``OutboxKind.line_barring``: tell the network (retried with
    backoff on failure; the adapter keys on line and generation)."""
    p = message.payload
    request = BarringRequest(
        line_id=uuid.UUID(str(p["line_id"])), iccid=str(p["iccid"]), msisdn=str(p["msisdn"]),
        action=str(p["action"]), generation=int(p["generation"]),
    )
    reference = await provisioner(rt.settings).set_barring(request)
    async with unit_of_work(rt.sessions) as session:
        await session.execute(
            update(BARS).where(BARS.c.line_id == request.line_id).values(
                detail={"last_action": request.action, "reference": reference,
                        "generation": request.generation}
            )
        )
    return reference


__all__ = ["BarTarget", "bar_lines", "deliver", "is_barred", "lift_account_bars", "lift_if_barred"]
