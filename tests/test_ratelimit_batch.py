"""``ratelimit.hit_many`` counts a batch of keys exactly as the same hits one at a time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from openmvno.db import unit_of_work
from openmvno.errors import TooManyAttempts
from openmvno.ratelimit import service as ratelimit
from openmvno.ratelimit.models import RateEvent
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock

WINDOW = timedelta(hours=1)
KEYS = ["a", "b", "a", "a", "c", "a", "b", "c", "x" * 200, "x" * 200]


async def _one_at_a_time(rt: Runtime, scope: str, keys: list[str], limit: int) -> list[bool]:
    allowed = []
    for key in keys:
        async with unit_of_work(rt.sessions) as s:
            try:
                await ratelimit.hit(s, scope=scope, key=key, limit=limit, window=WINDOW)
                allowed.append(True)
            except TooManyAttempts:
                allowed.append(False)
    return allowed


async def _events(rt: Runtime, scope: str) -> dict[str, int]:
    async with unit_of_work(rt.sessions, readonly=True) as s:
        rows = await s.execute(select(RateEvent.key, func.count()).where(RateEvent.scope == scope)
                               .group_by(RateEvent.key))
        return {k: n for k, n in rows.all()}


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_a_batch_allows_and_counts_what_one_at_a_time_would(
    rt: Runtime, frozen: FrozenClock, limit: int
) -> None:
    for scope in ("one", "many"):  # "c" already used its tries half an hour ago
        for _ in range(limit):
            async with unit_of_work(rt.sessions) as s:
                await ratelimit.hit(s, scope=scope, key="c", limit=limit, window=WINDOW)
    frozen.advance(minutes=30)
    expected = await _one_at_a_time(rt, "one", KEYS, limit)
    async with unit_of_work(rt.sessions) as s:
        waits = await ratelimit.hit_many(s, scope="many", keys=KEYS, limit=limit, window=WINDOW)
    assert [w == 0 for w in waits] == expected
    assert all(w == 30 * 60 for k, w in zip(KEYS, waits, strict=True) if k == "c")
    assert await _events(rt, "many") == await _events(rt, "one")


async def test_events_older_than_the_window_are_forgotten_and_no_longer_count(
    rt: Runtime, frozen: FrozenClock
) -> None:
    async with unit_of_work(rt.sessions) as s:
        assert await ratelimit.hit_many(s, scope="old", keys=["k", "k"], limit=2,
                                        window=WINDOW) == [0, 0]
    frozen.advance(minutes=61)
    async with unit_of_work(rt.sessions) as s:
        assert await ratelimit.hit_many(s, scope="old", keys=["k", "k", "k"], limit=2,
                                        window=WINDOW) == [0, 0, 3600]
    assert await _events(rt, "old") == {"k": 2}
