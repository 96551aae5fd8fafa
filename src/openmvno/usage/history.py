"""Usage history per line, day and kind (days in the operator's time zone)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock, formatting
from openmvno.config import Settings
from openmvno.db import Base
from openmvno.errors import InvalidInput, NotFound
from openmvno.lines.models import Line
from openmvno.usage.models import UsageRecord

RECORDS: Table = Base.metadata.tables[UsageRecord.__tablename__]
LINES: Table = Base.metadata.tables[Line.__tablename__]
MAX_DAYS = 366
DEFAULT_DAYS = 30
KINDS = ("data", "voice", "sms")


@dataclass(frozen=True, slots=True)
class UsageDay:
    day: date
    kind: str
    units: int
    records: int
    wallet_minor: int


@dataclass(slots=True)
class LineHistory:
    line_id: uuid.UUID
    msisdn: str
    start: date
    end: date
    days: list[UsageDay]
    totals: dict[str, int] = field(default_factory=dict)
    wallet_minor: int = 0

    def series(self, kind: str) -> list[tuple[date, int]]:
        """Every day from ``start`` to ``end`` with what ``kind`` used (0 for none)."""
        by_day = {d.day: d.units for d in self.days if d.kind == kind}
        out = []
        day = self.start
        while day <= self.end:
            out.append((day, by_day.get(day, 0)))
            day += timedelta(days=1)
        return out


def today(settings: Settings) -> date:
    return clock.now().astimezone(formatting.zone(settings.timezone)).date()


async def line_history(
    session: AsyncSession,
    settings: Settings,
    *,
    account_id: uuid.UUID,
    line_id: uuid.UUID,
    start: date | None = None,
    end: date | None = None,
) -> LineHistory:
    """What one of the account's lines used per day and kind, ``start``..``end``
    inclusive (default: the last 30 days); anyone else's line is "not found"."""
    end = end or today(settings)
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise InvalidInput("range_invalid", "The first day must not be after the last.")
    if (end - start).days >= MAX_DAYS:
        raise InvalidInput("range_too_long", "Ask for at most {days} days.", days=MAX_DAYS)
    msisdn = await session.scalar(
        select(LINES.c.msisdn).where(LINES.c.id == line_id, LINES.c.account_id == account_id)
    )
    if msisdn is None:
        raise NotFound("line_not_found", "There is no such line on your account.")
    rows = (await session.execute(
        select(
            RECORDS.c.day, RECORDS.c.kind, func.sum(RECORDS.c.charged_units),
            func.count(), func.sum(RECORDS.c.wallet_minor),
        )
        .where(
            RECORDS.c.line_id == line_id, RECORDS.c.account_id == account_id,
            RECORDS.c.day >= start, RECORDS.c.day <= end,
        )
        .group_by(RECORDS.c.day, RECORDS.c.kind)
        .order_by(RECORDS.c.day, RECORDS.c.kind)
    )).all()
    days = [UsageDay(r[0], str(r[1]), int(r[2] or 0), int(r[3]), int(r[4] or 0)) for r in rows]
    totals = {kind: sum(d.units for d in days if d.kind == kind) for kind in KINDS}
    return LineHistory(
        line_id=line_id, msisdn=msisdn, start=start, end=end, days=days, totals=totals,
        wallet_minor=sum(d.wallet_minor for d in days),
    )


__all__ = ["LineHistory", "UsageDay", "line_history", "today"]
