"""When a line's renewal is attempted — pure functions of its expiry and the settings.

Before expiry: one attempt at each of ``renewal_attempt_hours`` before it (default
T-24h, T-12h, T-1h). At expiry the line goes to grace (the lifecycle job); in grace the
attempts go on with backoff (``renewal_grace_retry_first_hours`` doubling up to
``renewal_grace_retry_max_hours`` between two) until the line is suspended. A suspended
line waits for its wallet to cover the price (see ``scheduler``), and is looked at every
``renewal_parked_check_hours`` in case it was renewed another way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from openmvno.config import Settings

BEFORE = "before"
GRACE = "grace"


def period_key(expires_at: datetime) -> str:
    """The period being renewed: its expiry as ISO UTC (``renewal_runs.period_key``)."""
    return expires_at.astimezone(UTC).isoformat()


def offsets(settings: Settings) -> list[timedelta]:
    """The attempts before expiry, earliest first (hours before it, positive, distinct)."""
    hours = sorted({h for h in settings.renewal_attempt_hours if h > 0}, reverse=True)
    return [timedelta(hours=h) for h in hours] or [timedelta(hours=1)]


def stage(settings: Settings, attempts: int) -> str:
    """The phase an attempt numbered ``attempts`` (0-based) belongs to: ``before`` expiry,
    or ``grace``. The failure notice is sent once per phase."""
    return BEFORE if attempts < len(offsets(settings)) else GRACE


def first_attempt(settings: Settings, expires_at: datetime, now: datetime) -> tuple[datetime, int]:
    """When the first attempt for a period is due, and the number it counts as: the first
    slot before expiry, or — when slots have already passed (auto-renew turned on late, or
    a line renewed another way at T-5h) — at once, counted as the last slot passed."""
    slots = [expires_at - o for o in offsets(settings)]
    passed = [i for i, at in enumerate(slots) if at <= now]
    if not passed:
        return slots[0], 0
    return now, passed[-1]


def next_after_failure(
    settings: Settings, expires_at: datetime, attempts_made: int, now: datetime
) -> datetime:
    """When to try again after ``attempts_made`` attempts (1-based count) failed: the next
    slot before expiry, else a grace retry with backoff from the expiry."""
    slots = [expires_at - o for o in offsets(settings)]
    for at in slots[attempts_made:]:
        if at > now:
            return at
    grace_index = max(0, attempts_made - len(slots))
    first = settings.renewal_grace_retry_first_hours
    gap = timedelta(hours=min(first * 2**grace_index, settings.renewal_grace_retry_max_hours))
    base = max(now, expires_at)
    return base + gap


def parked_until(settings: Settings, now: datetime) -> datetime:
    return now + timedelta(hours=settings.renewal_parked_check_hours)
