"""Count an event against a limit per (scope, key) over a sliding window."""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.errors import TooManyAttempts
from openmvno.ratelimit.models import RateEvent


async def hit(
    session: AsyncSession, *, scope: str, key: str, limit: int, window: timedelta
) -> None:
    """Record one event, or raise :class:`TooManyAttempts` (with the wait) if ``limit``
    events already happened within ``window``. Callers that fail afterwards should keep
    the transaction (``keep_changes``) so the event still counts."""
    now = clock.now()
    since = now - window
    await session.execute(
        delete(RateEvent).where(RateEvent.scope == scope, RateEvent.key == key,
                                RateEvent.at <= since)
    )
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(RateEvent.at)).where(
                RateEvent.scope == scope, RateEvent.key == key, RateEvent.at > since
            )
        )
    ).one()
    if count >= limit:
        wait = max(1, math.ceil((oldest + window - now).total_seconds()))
        raise TooManyAttempts(
            "rate_limited",
            "Too many tries from here; please wait {minutes} minutes and try again.",
            retry_after=wait,
            minutes=math.ceil(wait / 60),
        )
    session.add(RateEvent(scope=scope, key=key[:80], at=now))
    await session.flush()
