"""Rate-limit events are forgotten once no window needs them, even for keys never seen
again (a login tried once), by a worker job that runs at most once an hour."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from openmvno.db import unit_of_work
from openmvno.ratelimit import service as ratelimit
from openmvno.ratelimit.models import RateEvent
from openmvno.runtime import Runtime
from openmvno.worker.runner import jobs
from tests.conftest import FrozenClock


async def _keys(rt: Runtime) -> list[str]:
    async with unit_of_work(rt.sessions) as session:
        return sorted(await session.scalars(select(RateEvent.key)))


async def test_old_events_of_keys_never_seen_again_are_pruned_by_the_worker(
    rt: Runtime, frozen: FrozenClock
) -> None:
    assert ratelimit.prune_job in jobs(rt)
    async with unit_of_work(rt.sessions) as session:
        await ratelimit.record(session, scope="unknown_logins", key="once", window=timedelta(days=1))
    frozen.advance(days=2, seconds=1)
    async with unit_of_work(rt.sessions) as session:
        await ratelimit.record(session, scope="auth_failures", key="recent", window=timedelta(minutes=15))
    assert await _keys(rt) == ["once", "recent"]
    assert await ratelimit.prune_job(rt) == 1
    assert await _keys(rt) == ["recent"]
    frozen.advance(days=3)
    assert await ratelimit.prune_job(rt) == 1  # the next hour's run
    assert await ratelimit.prune_job(rt) == 0  # not again within the hour
    assert await _keys(rt) == []


async def test_a_long_key_still_counts(rt: Runtime) -> None:
    key = "x" * 200  # longer than the column: stored as its digest, and still matched
    async with unit_of_work(rt.sessions) as session:
        await ratelimit.hit(session, scope="t", key=key, limit=1, window=timedelta(hours=1))
        wait = await ratelimit.wait_for(session, scope="t", key=key, limit=1, window=timedelta(hours=1))
    assert wait > 0
