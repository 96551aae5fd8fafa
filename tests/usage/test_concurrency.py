"""Many connections charging one line at once: the exact final balance, never below zero;
a replayed batch charged once. (On SQLite writers queue; on PostgreSQL the buckets' row
locks do.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select, text

from openmvno.catalog.models import OverageRule
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import Bucket, EntryReason
from openmvno.lines.models import Line
from openmvno.runtime import Runtime
from openmvno.usage import charging
from openmvno.usage.models import NetworkPeer, UsageRecord
from tests.orders.helpers import fund_wallet, wallet_minor
from tests.usage.helpers import (
    MB,
    buckets,
    drift,
    entries,
    line_with_plan,
    make_peer,
    make_plan,
    remaining,
)


async def _peer_id(rt: Runtime) -> uuid.UUID:
    async with unit_of_work(rt.sessions) as s:
        found = await s.scalar(select(NetworkPeer.id))
    assert found is not None
    return found


def _records(line_msisdn: str, prefix: str, n: int, units: int) -> list[charging.RecordIn]:
    from openmvno import clock

    at = clock.now()
    return [charging.RecordIn(record_id=f"{prefix}-{i}", type="data", units=units,
                              started_at=at, msisdn=line_msisdn) for i in range(n)]


async def _charge(rt: Runtime, peer_id: uuid.UUID, records: list[charging.RecordIn]) -> dict[str, int]:
    async with unit_of_work(rt.sessions) as s:
        result = await charging.charge_batch(s, rt.settings, peer_id=peer_id, records=records)
    return result.counts


async def test_one_line_from_many_connections_ends_exact(rt: Runtime) -> None:
    plan = await make_plan(rt, "U-CONC", data_bytes=100 * MB, overage_rule=OverageRule.charge_wallet,
                           overage_rates={"data_mb": 10})
    line = await line_with_plan(rt, plan)
    assert line.account_id is not None
    await fund_wallet(rt, line.account_id, 500)  # pays for 50 MB beyond the allowance
    await make_peer(rt)
    peer_id = await _peer_id(rt)
    # 16 batches of 10 records of 1 MB at once: 160 MB asked, 100 MB allowance + 50 MB wallet.
    batches = [_records(line.msisdn, f"c{b}", 10, MB) for b in range(16)]
    counts = await asyncio.gather(*[_charge(rt, peer_id, b) for b in batches])
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    assert total == {"charged": 150, "blocked": 10}
    assert (await buckets(rt, line))["data"][0].remaining == 0
    assert await wallet_minor(rt, line.account_id) == 0
    assert await drift(rt) == []


async def test_a_replayed_batch_is_charged_once_even_at_the_same_moment(rt: Runtime) -> None:
    plan = await make_plan(rt, "U-REPLAY", data_bytes=100 * MB)
    line = await line_with_plan(rt, plan)
    await make_peer(rt)
    peer_id = await _peer_id(rt)
    batch = _records(line.msisdn, "same", 20, MB)
    counts = await asyncio.gather(*[_charge(rt, peer_id, batch) for _ in range(6)])
    assert sorted(c.get("charged", 0) for c in counts) == [0, 0, 0, 0, 0, 20]
    assert all(c.get("duplicate", 0) == 20 for c in counts if "charged" not in c)
    assert (await buckets(rt, line))["data"][0].remaining == 80 * MB
    async with unit_of_work(rt.sessions) as s:
        assert await s.scalar(select(func.count()).select_from(UsageRecord)) == 20
    assert await drift(rt) == []


# --- PostgreSQL's optimistic run: balances read unlocked, checked once locked ------------


def _on_postgres(rt: Runtime) -> None:
    if not rt.settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: a batch always locks first, nothing can interleave")


async def _between_read_and_lock(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], Awaitable[None]]
) -> list[bool]:
    """Run ``meanwhile`` (committed in its own transaction) once, after the first
    optimistic run has rated the batch and before it locks the buckets; returns each
    run's ``optimistic`` (the runs of ``meanwhile``'s own batch included)."""
    runs: list[bool] = []
    fired: list[bool] = []
    original_attempt = charging._attempt
    original_check = charging._lock_and_check

    async def attempt(*args: Any, optimistic: bool) -> charging.BatchResult:
        runs.append(optimistic)
        return await original_attempt(*args, optimistic=optimistic)

    async def check(*args: Any) -> None:
        if not fired:
            fired.append(True)
            await meanwhile()
        await original_check(*args)

    monkeypatch.setattr(charging, "_attempt", attempt)
    monkeypatch.setattr(charging, "_lock_and_check", check)
    return runs


async def _one_line(rt: Runtime, code: str, data: int) -> tuple[Line, uuid.UUID, Bucket]:
    """A line with a data bucket of ``data`` bytes, a peer; (line, peer id, bucket)."""
    _on_postgres(rt)
    plan = await make_plan(rt, code, data_bytes=data)
    line = await line_with_plan(rt, plan)
    await make_peer(rt)
    return line, await _peer_id(rt), (await buckets(rt, line))["data"][0]


async def test_a_credit_between_read_and_lock_is_seen_by_running_again_locked(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    line, peer_id, bucket = await _one_line(rt, "U-OPT-CREDIT", 10 * MB)

    async def credit() -> None:
        async with unit_of_work(rt.sessions) as s:
            await ledger.post(s, bucket_id=bucket.id, account_id=bucket.account_id,
                              delta=10 * MB, reason=EntryReason.adjust, key="goodwill")

    runs = await _between_read_and_lock(monkeypatch, credit)
    # 15 MB against the 10 MB read: rating empties the bucket and blocks the rest, which
    # the 10 MB credited meanwhile would have paid for: the batch runs again, locked.
    counts = await _charge(rt, peer_id, _records(line.msisdn, "opt", 1, 15 * MB))
    assert runs == [True, False]
    assert counts == {"charged": 1}
    assert await remaining(rt, bucket.id) == 5 * MB
    assert await drift(rt) == []


async def test_a_debit_between_read_and_lock_that_leaves_enough_changes_nothing(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    line, peer_id, bucket = await _one_line(rt, "U-OPT-DEBIT", 100 * MB)

    async def other_batch() -> None:
        async with unit_of_work(rt.sessions) as s:
            await charging.charge_batch(s, rt.settings, peer_id=peer_id,
                                        records=_records(line.msisdn, "other", 1, 50 * MB))

    runs = await _between_read_and_lock(monkeypatch, other_batch)
    counts = await _charge(rt, peer_id, _records(line.msisdn, "opt", 3, 10 * MB))
    # The other batch ran (optimistic, nothing in its way) inside ours; ours still fits.
    assert runs == [True, True]
    assert counts == {"charged": 3}
    assert await remaining(rt, bucket.id) == 20 * MB
    assert await entries(rt, bucket.id) == [100 * MB, -50 * MB, -30 * MB]
    assert await drift(rt) == []


async def test_a_debit_between_read_and_lock_that_leaves_too_little_runs_again_locked(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    line, peer_id, bucket = await _one_line(rt, "U-OPT-SHORT", 100 * MB)
    done: list[dict[str, int]] = []

    async def other_batch() -> None:
        async with unit_of_work(rt.sessions) as s:
            result = await charging.charge_batch(
                s, rt.settings, peer_id=peer_id,
                records=_records(line.msisdn, "other", 1, 80 * MB))
        done.append(result.counts)

    runs = await _between_read_and_lock(monkeypatch, other_batch)
    counts = await _charge(rt, peer_id, _records(line.msisdn, "opt", 3, 10 * MB))
    # Read 100 MB, 30 MB rated; 20 MB left once locked: rated again against those.
    assert done == [{"charged": 1}]
    assert runs == [True, True, False]  # ours, the other batch, ours again locked
    assert counts == {"charged": 2, "blocked": 1}
    assert await remaining(rt, bucket.id) == 0
    assert await drift(rt) == []


# --- the locked run, queued behind a batch that holds the same buckets -------------------

_PLAN_SHAPES = [
    (),  # whatever the planner picks
    ("enable_hashjoin", "enable_mergejoin", "enable_indexscan"),  # nested loops over scans
    ("enable_nestloop", "enable_hashjoin"),  # merge joins
    ("enable_nestloop", "enable_mergejoin"),  # hash joins
]


@pytest.mark.parametrize("plan_off", _PLAN_SHAPES, ids=lambda off: "+".join(off) or "default")
async def test_the_locked_run_sees_every_bucket_a_queued_batch_changed(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, plan_off: tuple[str, ...]
) -> None:
    """A batch waiting for the buckets another batch holds gets, once that one commits,
    every bucket and wallet as it left them — whatever plan PostgreSQL chose (a locking
    join once lost the wallet when the row it waited for had changed: records the wallet
    paid for were answered ``blocked``)."""
    _on_postgres(rt)
    plan = await make_plan(rt, "U-QUEUE", data_bytes=100 * MB,
                           overage_rule=OverageRule.charge_wallet, overage_rates={"data_mb": 10})
    line = await line_with_plan(rt, plan)
    assert line.account_id is not None
    await fund_wallet(rt, line.account_id, 500)
    await make_peer(rt)
    peer_id = await _peer_id(rt)
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder() -> dict[str, int]:
        # 105 MB: the allowance and 5 MB (50) of the wallet, held until the other waits.
        async with unit_of_work(rt.sessions) as s:
            result = await charging.charge_batch(
                s, rt.settings, peer_id=peer_id, records=_records(line.msisdn, "h", 105, MB))
            holding.set()
            await release.wait()
        return result.counts

    original_attempt = charging._attempt

    async def locked_first(*args: Any, optimistic: bool) -> charging.BatchResult:
        return await original_attempt(*args, optimistic=False)

    async def waiter() -> dict[str, int]:
        await holding.wait()
        async with unit_of_work(rt.sessions) as s:
            for setting in plan_off:
                await s.execute(text(f"SET LOCAL {setting} = off"))
            result = await charging.charge_batch(
                s, rt.settings, peer_id=peer_id, records=_records(line.msisdn, "w", 10, MB))
        return result.counts

    async def let_go_once_waiting() -> None:
        await holding.wait()
        while True:  # a transaction per look: pg_stat_activity holds still within one
            async with rt.engine.connect() as watch:
                if await watch.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )):
                    break
            await asyncio.sleep(0.01)
        release.set()

    monkeypatch.setattr(charging, "_attempt", locked_first)
    held, waited, _ = await asyncio.gather(holder(), waiter(), let_go_once_waiting())
    assert held == {"charged": 105}
    assert waited == {"charged": 10}  # from the wallet, as the first batch left it
    assert await wallet_minor(rt, line.account_id) == 500 - 50 - 100
    assert (await buckets(rt, line))["data"][0].remaining == 0
    assert await drift(rt) == []
