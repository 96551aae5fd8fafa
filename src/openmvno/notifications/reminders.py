"""The expiry reminders job: a line's ``expiry_reminder`` some days before its plan ends
(the schedule an admin sets on the console, ``runtime_settings`` key ``reminders.days``,
read through ``staff.runtime_settings`` at most ``runtime_settings_cache_seconds`` old;
until one is set ``settings.expiry_reminder_days``, default 7, 3 and 1), once per (line, expiry,
threshold) by the notice key ``expiry_reminder:{line_id}:{expires_at ISO}:{days}``; the
text says the whole days actually left.

Set-based: per threshold one SELECT finds the active lines whose expiry falls in that
threshold's window (between the next smaller threshold and this one) and that have no
reminder yet since the threshold was reached (``NOT EXISTS`` over ``notices``, so a
reminded line is not looked at again), with their plan, price and auto-renew setting;
then one :func:`notify_many` queues them all. A worker that was down sends only the
reminder that still applies (the 3-day one, not the 7-day one, when 3 days are left).
Reminders are not urgent: they wait for the end of quiet hours."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.lines.models import Line, LineState
from openmvno.notifications.models import Notice
from openmvno.notifications.notices import NoticeRequest, notify_many
from openmvno.runtime import Runtime
from openmvno.staff import runtime_settings

EVENT = "expiry_reminder"
BATCH = 1000


def reminder_key(line_id: Any, expires_at: datetime, days: int) -> str:
    return f"{EVENT}:{line_id}:{expires_at.isoformat()}:{days}"


def _minus_days(session: AsyncSession, column: Any, days: int) -> ColumnElement[Any]:
    """``column - days`` in SQL (SQLite keeps UTC datetimes as text)."""
    if session.get_bind().dialect.name == "sqlite":
        return func.datetime(column, f"-{days} days")
    return column - literal_column(f"interval '{days} days'")  # type: ignore[no-any-return]


def _auto_renew_column() -> tuple[Any, Any] | None:
    """RENEWALS's per-line setting (enabled or not), when that table exists."""
    try:
        from openmvno.renewals.models import AutoRenewSetting
    except ImportError:  # pragma: no cover - before auto-renew settings existed
        return None
    return AutoRenewSetting, AutoRenewSetting.enabled


async def due(session: AsyncSession, *, days: int, smaller: int, now: datetime,
              limit: int) -> list[NoticeRequest]:
    """Lines at ``days`` before expiry (but not yet at ``smaller``) with no reminder since."""
    since = _minus_days(session, Line.expires_at, days)
    reminded = exists().where(
        Notice.line_id == Line.id, Notice.event == EVENT, Notice.created_at >= since,
    )
    renew = _auto_renew_column()
    columns: list[Any] = [Line.id, Line.account_id, Line.expires_at, Plan.name_zh,
                          Plan.name_en, Plan.price_minor, Plan.currency]
    stmt = select(*columns).join(Plan, Plan.id == Line.plan_id)
    if renew is not None:
        table, enabled = renew
        stmt = stmt.add_columns(enabled).outerjoin(table, table.line_id == Line.id)
    stmt = stmt.where(
        Line.state == LineState.active, Line.account_id.is_not(None),
        Line.expires_at > now + timedelta(days=smaller),
        Line.expires_at <= now + timedelta(days=days),
        ~reminded,
    ).order_by(Line.expires_at, Line.id).limit(limit)
    out = []
    for row in (await session.execute(stmt)).all():
        line_id, account_id, expires_at, name_zh, name_en, price, currency = row[:7]
        params: dict[str, Any] = {
            "days_left": max(1, math.ceil((expires_at - now) / timedelta(days=1))),
            "plan": {"zh-CN": name_zh, "en": name_en},
            "expires_at": expires_at, "amount_minor": price, "currency": currency,
        }
        if renew is not None:
            params["auto_renew"] = bool(row[7])
        out.append(NoticeRequest(account_id=account_id, event=EVENT, line_id=line_id,
                                 key=reminder_key(line_id, expires_at, days), params=params))
    return out


async def run_due(rt: Runtime) -> int:
    """One batch of due reminders per threshold, in one short transaction; how many were
    queued (0: nothing due). The schedule is the run-time one, refreshed through this
    job's own session when this process's copy is older than the cache time."""
    now = clock.now()
    done = 0
    async with unit_of_work(rt.sessions) as session:
        await runtime_settings.refresh(session, rt)
        thresholds = runtime_settings.reminder_days(rt)
        for i, days in enumerate(thresholds):
            smaller = thresholds[i + 1] if i + 1 < len(thresholds) else 0
            batch = await due(session, days=days, smaller=smaller, now=now, limit=BATCH)
            if batch:
                done += await notify_many(session, batch)
    return done


__all__ = ["reminder_key", "run_due"]
