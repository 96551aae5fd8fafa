"""Record ids with the characters an array literal must quote (``"``, ``\\``, ``,``,
braces, the word NULL) are stored exactly as sent and found again on a replay."""

from __future__ import annotations

from sqlalchemy import select

from openmvno import clock
from openmvno.db import unit_of_work
from openmvno.runtime import Runtime
from openmvno.usage import charging
from openmvno.usage.models import NetworkPeer, UsageRecord
from tests.usage.helpers import MB, buckets, drift, line_with_plan, make_peer, make_plan

ODD_IDS = ['a"b', "c\\d", "e,f", "{g}", "NULL", '\\"', "h}i{j", "k'l"]


async def test_odd_record_ids_are_stored_as_sent_and_a_replay_is_duplicate(rt: Runtime) -> None:
    plan = await make_plan(rt, "U-IDS", data_bytes=100 * MB)
    line = await line_with_plan(rt, plan)
    await make_peer(rt)
    async with unit_of_work(rt.sessions) as s:
        peer_id = await s.scalar(select(NetworkPeer.id))
    assert peer_id is not None
    at = clock.now()
    records = [charging.RecordIn(record_id=rid, type="data", units=MB, started_at=at,
                                 msisdn=line.msisdn) for rid in ODD_IDS]
    for expected in ("charged", "duplicate"):
        async with unit_of_work(rt.sessions) as s:
            result = await charging.charge_batch(s, rt.settings, peer_id=peer_id, records=records)
        assert [(r["record_id"], r["status"]) for r in result.results] == [
            (rid, expected) for rid in ODD_IDS
        ]
    async with unit_of_work(rt.sessions) as s:
        stored = set((await s.scalars(select(UsageRecord.record_id))).all())
    assert stored == set(ODD_IDS)
    assert (await buckets(rt, line))["data"][0].remaining == 100 * MB - len(ODD_IDS) * MB
    assert await drift(rt) == []
