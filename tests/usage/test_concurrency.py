"""Many connections charging one line at once: the exact final balance, never below zero;
a replayed batch charged once. (On SQLite writers queue; on PostgreSQL the buckets' row
locks do.)"""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select

from openmvno.catalog.models import OverageRule
from openmvno.db import unit_of_work
from openmvno.runtime import Runtime
from openmvno.usage import charging
from openmvno.usage.models import NetworkPeer, UsageRecord
from tests.orders.helpers import fund_wallet, wallet_minor
from tests.usage.helpers import MB, buckets, drift, line_with_plan, make_peer, make_plan


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
