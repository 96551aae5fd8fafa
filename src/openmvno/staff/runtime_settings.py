"""Operator settings changed at run time, stored in ``runtime_settings`` so every process
(web, worker, SMS, USSD) sees them: each keeps a copy at most
``runtime_settings_cache_seconds`` old (:func:`refresh` reads the table again when its
copy is older). Today: which payment methods are switched off (``payment_methods.off``)
and the expiry reminder schedule (``reminders.days``). The environment's
``payment_methods`` stays the outer limit: a method it leaves out is never offered,
whatever this table says; ``expiry_reminder_days`` is the schedule until an admin sets one.

This module imports only the core and ``staff.models`` (no other domain), so any domain
(payments, notifications, renewals) may read the settings through it without an import
cycle; the services that *change* a setting (audited) live elsewhere (``staff.schedule``,
the admin console)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.runtime import Runtime
from openmvno.staff.models import RuntimeSetting

METHODS_OFF = "payment_methods.off"
REMINDER_DAYS = "reminders.days"
_CACHE = "runtime_settings"


def _cached(rt: Runtime) -> tuple[float, dict[str, Any]] | None:
    found = rt.extras.get(_CACHE)
    return found if isinstance(found, tuple) else None


async def refresh(session: AsyncSession, rt: Runtime, *, force: bool = False) -> dict[str, Any]:
    """This process's copy of the settings, read again when older than the cache time."""
    cached = _cached(rt)
    now = time.monotonic()
    if (
        not force
        and cached is not None
        and now - cached[0] < rt.settings.runtime_settings_cache_seconds
    ):
        return cached[1]
    rows = (await session.execute(select(RuntimeSetting.key, RuntimeSetting.value))).all()
    values = {row.key: row.value for row in rows}
    rt.extras[_CACHE] = (now, values)
    return values


def methods_off(rt: Runtime) -> set[str]:
    """The methods switched off, as of this process's last read (no database round trip)."""
    cached = _cached(rt)
    found = cached[1].get(METHODS_OFF) if cached else None
    return {str(m) for m in found} if isinstance(found, list) else set()


def method_on(rt: Runtime, method: str) -> bool:
    """Whether payment method ``method`` may be used now, as of this process's last read:
    configured (``settings.payment_methods``) and not switched off on the admin console.
    Off-session payers (auto-renewal, auto top-up) ask this once per batch."""
    return method in rt.settings.payment_methods and method not in methods_off(rt)


def reminder_days(rt: Runtime) -> list[int]:
    """The days before expiry on which reminders go out, largest first, as of this process's
    last read: the admin's schedule when one is stored (and well-formed), else the
    environment's ``expiry_reminder_days``."""
    cached = _cached(rt)
    found = cached[1].get(REMINDER_DAYS) if cached else None
    if isinstance(found, list) and all(type(d) is int and d > 0 for d in found):
        days = found
    else:
        days = list(rt.settings.expiry_reminder_days)
    return sorted({int(d) for d in days if int(d) > 0}, reverse=True)


def reminder_days_stored(rt: Runtime) -> bool:
    """Whether an admin's schedule is stored (else the environment's applies)."""
    cached = _cached(rt)
    return bool(cached and isinstance(cached[1].get(REMINDER_DAYS), list))


async def set_value(
    session: AsyncSession, rt: Runtime, key: str, value: Any, *, actor_id: uuid.UUID | None
) -> None:
    row = await session.get(RuntimeSetting, key, with_for_update=True)
    if row is None:
        session.add(
            RuntimeSetting(key=key, value=value, updated_at=clock.now(), updated_by=actor_id)
        )
    else:
        row.value = value
        row.updated_at = clock.now()
        row.updated_by = actor_id
    await session.flush()
    rt.extras.pop(_CACHE, None)  # this process sees it at once; the others within the cache time
