"""The expiry reminder schedule an admin sets at run time (``runtime_settings`` key
``reminders.days``): whole days 1..60, at most five distinct values, stored largest first.
Every change is an audit event ``reminders.schedule`` with the schedule before and after
(the environment's ``expiry_reminder_days`` counts as "before" until one is stored). The
worker's ``notifications.reminders.run_due`` reads it through ``staff.runtime_settings``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.models import Account
from openmvno.audit import service as audit
from openmvno.errors import InvalidInput
from openmvno.runtime import Runtime
from openmvno.staff import runtime_settings

MIN_DAYS = 1
MAX_DAYS = 60
MAX_VALUES = 5
_SEPARATORS = re.compile(r"[\s,，、;；]+")


def _refused() -> InvalidInput:
    return InvalidInput(
        "reminder_days_invalid",
        "Type one to {count} whole numbers of days between {low} and {high}, such as 7, 3, 1.",
        count=MAX_VALUES, low=MIN_DAYS, high=MAX_DAYS,
    )


def parse_days(text: str) -> list[int]:
    """``"7, 3，1"`` → ``[7, 3, 1]`` (distinct, largest first); anything else (a fraction,
    a word, 0, 61, a sixth distinct value, nothing at all) is ``reminder_days_invalid``."""
    parts = [p for p in _SEPARATORS.split(text.strip()) if p]
    if any(not p.isascii() or not p.isdigit() or len(p) > 3 for p in parts):
        raise _refused()
    return check_days([int(p) for p in parts])


def check_days(values: Sequence[int]) -> list[int]:
    """The schedule given as numbers (the API's list): distinct, largest first, or
    ``reminder_days_invalid`` as :func:`parse_days`."""
    if not values or any(type(v) is not int or not MIN_DAYS <= v <= MAX_DAYS for v in values):
        raise _refused()
    days = set(values)
    if len(days) > MAX_VALUES:
        raise _refused()
    return sorted(days, reverse=True)


def current(rt: Runtime) -> tuple[list[int], Literal["console", "environment"]]:
    """The schedule in force and where it comes from (``console`` or ``environment``), as of
    this process's last read (call ``runtime_settings.refresh`` first)."""
    stored = runtime_settings.reminder_days_stored(rt)
    return runtime_settings.reminder_days(rt), "console" if stored else "environment"


async def set_reminder_days(
    session: AsyncSession, rt: Runtime, *, actor: Account, text: str | None = None,
    days: Sequence[int] | None = None, reason: str = "",
) -> list[int]:
    """Store the schedule typed in ``text`` (see :func:`parse_days`) or given as ``days``
    (see :func:`check_days`) and audit the change; the schedule now in force."""
    days = parse_days(text or "") if days is None else check_days(days)
    await runtime_settings.refresh(session, rt, force=True)
    before = runtime_settings.reminder_days(rt)
    stored = runtime_settings.reminder_days_stored(rt)
    if stored and before == days:
        return days
    await runtime_settings.set_value(
        session, rt, runtime_settings.REMINDER_DAYS, days, actor_id=actor.id
    )
    await audit.record(
        session,
        actor=actor,
        action="reminders.schedule",
        subject_type="runtime_setting",
        subject_id=runtime_settings.REMINDER_DAYS,
        reason=reason,
        data={"before": {"days": before, "from": "console" if stored else "environment"},
              "after": {"days": days}},
    )
    return days


__all__ = [
    "MAX_DAYS", "MAX_VALUES", "MIN_DAYS", "check_days", "current", "parse_days",
    "set_reminder_days",
]
