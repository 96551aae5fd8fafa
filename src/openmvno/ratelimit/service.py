"""Count events per (scope, key) over a sliding window, kept in the database so every
process shares them.

``hit`` is the usual check-and-count. The pieces are public for callers that count only
failures (check first, record after the failure) or that emulate another counter (the
lockout of a login no account uses). Keys longer than the column are stored as their
SHA-256, so a long key still counts (it used to be cut and then never matched)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.db import unit_of_work
from openmvno.errors import TooManyAttempts
from openmvno.ratelimit.models import RateEvent
from openmvno.runtime import Runtime

_KEY_LENGTH = 80


def _fit(key: str) -> str:
    return key if len(key) <= _KEY_LENGTH else hashlib.sha256(key.encode()).hexdigest()


def digest(value: str) -> str:
    """A short, stable stand-in for a personal key (an email, a phone number): rate
    events then hold no personal data."""
    return hashlib.sha256(value.encode()).hexdigest()[:40]


async def serialize(session: AsyncSession, *, scope: str, key: str) -> None:
    """Make concurrent counters of one (scope, key) take turns until this transaction
    ends: a PostgreSQL advisory lock (SQLite's ``BEGIN IMMEDIATE`` already runs one writer
    at a time). Without it two requests could both read "4 of 5" and both go ahead."""
    if session.get_bind().dialect.name != "postgresql":
        return
    raw = hashlib.sha256(f"ratelimit:{scope}:{_fit(key)}".encode()).digest()[:8]
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:id)"),
        {"id": int.from_bytes(raw, "big", signed=True)},
    )


async def times(
    session: AsyncSession, *, scope: str, key: str, window: timedelta
) -> list[datetime]:
    """When the events of (scope, key) within ``window`` happened, oldest first."""
    since = clock.now() - window
    rows = await session.scalars(
        select(RateEvent.at)
        .where(RateEvent.scope == scope, RateEvent.key == _fit(key), RateEvent.at > since)
        .order_by(RateEvent.at)
    )
    return list(rows)


async def wait_for(
    session: AsyncSession, *, scope: str, key: str, limit: int, window: timedelta
) -> int:
    """Seconds until one more event is allowed (0: allowed now). Records nothing."""
    now = clock.now()
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(RateEvent.at)).where(
                RateEvent.scope == scope, RateEvent.key == _fit(key), RateEvent.at > now - window
            )
        )
    ).one()
    if count < limit:
        return 0
    return max(1, math.ceil((oldest + window - now).total_seconds()))


async def record(session: AsyncSession, *, scope: str, key: str, window: timedelta) -> None:
    """Count one event now (and forget this key's events older than ``window``)."""
    now = clock.now()
    await session.execute(
        delete(RateEvent).where(
            RateEvent.scope == scope, RateEvent.key == _fit(key), RateEvent.at <= now - window
        )
    )
    session.add(RateEvent(scope=scope, key=_fit(key), at=now))
    await session.flush()


def limited(wait: int) -> TooManyAttempts:
    """The answer when a client address has used up its tries."""
    return TooManyAttempts(
        "rate_limited",
        "Too many tries from here; please wait {minutes} minutes and try again.",
        retry_after=wait,
        minutes=math.ceil(wait / 60),
    )


async def hit(
    session: AsyncSession, *, scope: str, key: str, limit: int, window: timedelta
) -> None:
    """Record one event, or raise :class:`TooManyAttempts` (with the wait) if ``limit``
    events already happened within ``window``. Concurrent hits on one key take turns.
    Callers that fail afterwards should keep the transaction (``keep_changes``) so the
    event still counts."""
    await serialize(session, scope=scope, key=key)
    wait = await wait_for(session, scope=scope, key=key, limit=limit, window=window)
    if wait:
        raise limited(wait)
    await record(session, scope=scope, key=key, window=window)


async def hit_many(
    session: AsyncSession, *, scope: str, keys: Sequence[str], limit: int, window: timedelta
) -> list[int]:
    """:func:`hit` for many keys at once, in input order (a key twice counts twice): the
    seconds each must wait, 0 where it was allowed and recorded. A fixed number of
    statements whatever the number of keys (PostgreSQL: one advisory lock statement
    for all of them, in a fixed order so two batches never wait on each other in a
    circle; one SELECT; one DELETE of expired events; one INSERT)."""
    if not keys:
        return []
    fitted = [_fit(k) for k in keys]
    distinct = sorted(set(fitted))
    now = clock.now()
    since = now - window
    if session.get_bind().dialect.name == "postgresql":
        ids = sorted({
            int.from_bytes(hashlib.sha256(f"ratelimit:{scope}:{k}".encode()).digest()[:8],
                           "big", signed=True)
            for k in distinct
        })
        await session.execute(
            text("SELECT pg_advisory_xact_lock(id) FROM unnest(CAST(:ids AS bigint[])) AS t(id)"),
            {"ids": ids},
        )
    rows = await session.execute(
        select(RateEvent.key, RateEvent.at)
        .where(RateEvent.scope == scope, RateEvent.key.in_(distinct), RateEvent.at > since)
        .order_by(RateEvent.key, RateEvent.at)
    )
    seen: dict[str, list[datetime]] = {}
    for key, at in rows:
        seen.setdefault(key, []).append(at)
    waits = []
    for key in fitted:
        counted = seen.setdefault(key, [])
        if len(counted) < limit:
            counted.append(now)
            waits.append(0)
        else:
            waits.append(max(1, math.ceil((counted[0] + window - now).total_seconds())))
    allowed = [k for k, w in zip(fitted, waits, strict=True) if not w]
    await session.execute(
        delete(RateEvent).where(
            RateEvent.scope == scope, RateEvent.key.in_(distinct), RateEvent.at <= since
        )
    )
    if allowed:
        await session.execute(insert(RateEvent), [
            {"scope": scope, "key": k, "at": now} for k in allowed
        ])
    return waits


RETENTION = timedelta(days=2)
"""Longer than the longest window anything counts over (a day)."""


async def prune(
    session: AsyncSession, *, older_than: timedelta = RETENTION, batch: int = 5000
) -> int:
    """Forget up to ``batch`` events older than ``older_than``, oldest first: keys that
    are never counted again (a login tried once) are not pruned by :func:`record`."""
    old = (
        select(RateEvent.id)
        .where(RateEvent.at <= clock.now() - older_than)
        .order_by(RateEvent.id)
        .limit(batch)
    )
    result = await session.execute(delete(RateEvent).where(RateEvent.id.in_(old)))
    return int(getattr(result, "rowcount", 0) or 0)


async def prune_job(rt: Runtime) -> int:
    """A worker job: prune at most once an hour per process."""
    now = clock.now()
    last = rt.extras.get("rate_events_pruned_at")
    if last is not None and now - last < timedelta(hours=1):
        return 0
    rt.extras["rate_events_pruned_at"] = now
    async with unit_of_work(rt.sessions) as session:
        return await prune(session)
