"""The usage API: a batch charged from the plan, every record answered."""

from __future__ import annotations

import httpx

from openmvno.runtime import Runtime
from tests.usage.helpers import (
    GB,
    MB,
    buckets,
    drift,
    line_with_plan,
    make_peer,
    make_plan,
    record,
    send,
)


async def test_a_batch_is_charged_and_replayed_once(client: httpx.AsyncClient, rt: Runtime) -> None:
    plan = await make_plan(rt, "U-D10", data_bytes=10 * GB)
    line = await line_with_plan(rt, plan)
    key = await make_peer(rt)
    recs = [record(line, rid=f"r{i}", units=100 * MB) for i in range(5)]
    r = await send(client, key, recs)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["counts"] == {"charged": 5}
    assert [x["status"] for x in body["results"]] == ["charged"] * 5
    data = (await buckets(rt, line))["data"][0]
    assert data.remaining == 10 * GB - 500 * MB
    again = await send(client, key, recs)
    assert again.json()["counts"] == {"duplicate": 5}
    assert (await buckets(rt, line))["data"][0].remaining == 10 * GB - 500 * MB
    assert await drift(rt) == []
