"""A month in the life of one line, through the usage API: an add-on used before the
plan, roaming (in a plan zone, with a roaming pack, and outside every zone), thresholds,
overage on the wallet with its rounding, a wallet that runs dry, the line barred, a
top-up that lifts the bar. Every bucket, ledger entry, notice and outbox job asserted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from openmvno.catalog.models import OverageRule, PlanKind
from openmvno.db import unit_of_work
from openmvno.ledger.models import BalanceEntry, EntryReason
from openmvno.notifications.models import Notice, OutboxKind, OutboxMessage
from openmvno.runtime import Runtime
from openmvno.usage.models import LineBar, UsageRecord
from tests.conftest import FrozenClock
from tests.orders.helpers import (
    fund_wallet,
    order,
    pay,
    reference_of,
    send_webhook,
    subscriber,
    use_tiny_provider,
    wallet_minor,
)
from tests.usage.helpers import (
    GB,
    MB,
    buckets,
    drift,
    entries,
    grant,
    line_with_plan,
    make_peer,
    make_plan,
    record,
    send,
)


async def _notices(rt: Runtime) -> list[tuple[str, str]]:
    async with unit_of_work(rt.sessions) as s:
        rows = (await s.execute(select(Notice.event, Notice.key).order_by(Notice.created_at,
                                                                          Notice.key))).all()
    return [(e, k) for e, k in rows]


async def _bar_jobs(rt: Runtime) -> list[dict[str, Any]]:
    async with unit_of_work(rt.sessions) as s:
        rows = (await s.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == OutboxKind.line_barring).order_by(OutboxMessage.created_at)
        )).all()
    return [dict(m.payload) | {"state": m.state.value} for m in rows]


def _statuses(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [x["status"] for x in r.json()["results"]]


async def test_a_month_of_one_line(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock, deliver: Any
) -> None:
    provider = use_tiny_provider(rt)
    plan = await make_plan(
        rt, "U-M30", kind=PlanKind.mixed, data_bytes=GB, voice_seconds=100 * 60, sms_count=10,
        roaming_zones=["HK"], overage_rule=OverageRule.charge_wallet,
        overage_rates={"data_mb": 5, "voice_min": 15, "sms": 10},
        roaming_rates={"data_mb": 50},
    )
    addon = await make_plan(rt, "U-ADD500", kind=PlanKind.addon, data_bytes=500 * MB,
                            validity_days=7)
    japan = await make_plan(rt, "U-JP200", kind=PlanKind.addon, data_bytes=200 * MB,
                            validity_days=7, roaming_zones=["JP"])
    headers, me = await subscriber(client)
    line = await line_with_plan(rt, plan, me, valid_from=frozen.now)
    await fund_wallet(rt, me, 2000)
    key = await make_peer(rt)
    start = frozen.now
    [plan_data] = (await buckets(rt, line))["data"]
    [plan_voice] = (await buckets(rt, line))["voice"]

    # Day 1: 300 MB at home, from the plan.
    frozen.advance(days=1)
    r = await send(client, key, [record(line, rid="d1", units=300 * MB)])
    assert _statuses(r) == ["charged"]
    [taken] = r.json()["results"][0]["buckets"]
    assert taken == {"bucket_id": str(plan_data.id), "units": 300 * MB}

    # Day 2: an add-on (500 MB) and a Japan roaming pack (200 MB).
    frozen.advance(days=1)
    [addon_data] = await grant(rt, line, addon, start=frozen.now)
    [jp_data] = await grant(rt, line, japan, start=frozen.now)

    # Day 3: 600 MB at home: the add-on first (all of it), then 100 MB of the plan.
    frozen.advance(days=1)
    r = await send(client, key, [record(line, rid="d3", units=600 * MB)])
    assert _statuses(r) == ["charged"]
    assert r.json()["results"][0]["buckets"] == [
        {"bucket_id": str(addon_data.id), "units": 500 * MB},
        {"bucket_id": str(plan_data.id), "units": 100 * MB},
    ]

    # Day 5: roaming. Hong Kong is in the plan; Japan only in the pack; the US in nothing:
    # data there is charged at the roaming rate (50 fen a MB), voice there is blocked.
    frozen.advance(days=2)
    r = await send(client, key, [
        record(line, rid="hk", units=100 * MB, zone="HK"),
        record(line, rid="jp", units=50 * MB, zone="JP"),
        record(line, rid="us-data", units=MB, zone="US"),
        record(line, rid="us-voice", kind="voice", units=60, zone="US"),
    ])
    assert _statuses(r) == ["charged", "charged", "charged", "blocked"]
    res = r.json()["results"]
    assert res[0]["buckets"] == [{"bucket_id": str(plan_data.id), "units": 100 * MB}]
    assert res[1]["buckets"] == [{"bucket_id": str(jp_data.id), "units": 50 * MB}]
    assert "buckets" not in res[2]
    assert res[2]["wallet"] == {"units": MB, "minor": 50, "currency": "CNY"}
    assert res[3]["charged_units"] == 0
    assert await wallet_minor(rt, me) == 1950
    # Voice at home comes from the plan's minutes (a started minute is not rounded there).
    r = await send(client, key, [record(line, rid="call", kind="voice", units=61)])
    assert _statuses(r) == ["charged"]

    # Day 10: 700 MB at home: the plan's last 524 MB, then 176 MB from the wallet at
    # 5 fen a MB (176 MB = 180,224 started KB → 880 fen).
    frozen.advance(days=5)
    assert (await buckets(rt, line))["data"][0].remaining == 524 * MB
    r = await send(client, key, [record(line, rid="d10", units=700 * MB)])
    assert _statuses(r) == ["charged"]
    got = r.json()["results"][0]
    assert got["buckets"] == [{"bucket_id": str(plan_data.id), "units": 524 * MB}]
    assert got["wallet"] == {"units": 176 * MB, "minor": 880, "currency": "CNY"}
    assert await wallet_minor(rt, me) == 1070
    # 1,500 bytes more: two started KB at 5 fen a MB round up to 1 fen.
    r = await send(client, key, [record(line, rid="d10b", units=1500)])
    assert r.json()["results"][0]["wallet"] == {"units": 1500, "minor": 1, "currency": "CNY"}

    # Day 11: 300 MB would cost 1,500 fen; the wallet holds 1,069: it pays for 213.8 MB
    # (whole started KB), the record is partial, the line is barred.
    frozen.advance(days=1)
    r = await send(client, key, [record(line, rid="d11", units=300 * MB)])
    assert _statuses(r) == ["partial"]
    got = r.json()["results"][0]
    affordable_kb = 1069 * 1024 // 5
    assert got["wallet"] == {"units": affordable_kb * 1024, "minor": 1069, "currency": "CNY"}
    assert got["charged_units"] == affordable_kb * 1024
    assert await wallet_minor(rt, me) == 0
    r = await send(client, key, [record(line, rid="d11b", units=MB)])
    assert _statuses(r) == ["blocked"]
    async with unit_of_work(rt.sessions) as s:
        bar = await s.get(LineBar, line.id)
    assert bar is not None
    assert (bar.barred, bar.generation) == (True, 1)
    assert [(j["action"], j["generation"]) for j in await _bar_jobs(rt)] == [("bar_data", 1)]

    # Day 12: a ¥30 top-up by card lifts the bar (an unbar job), and data flows again.
    frozen.advance(days=1)
    login = await client.post("/api/v1/auth/token", json={
        "login": headers["X-Phone"], "password": "Harbour-Lights-2026"})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    o = (await order(client, headers, {"kind": "topup", "amount_minor": 3000})).json()
    ref = reference_of(await pay(client, headers, o["id"], "card"))
    assert (await send_webhook(client, provider, ref, "succeeded")).status_code == 200
    async with unit_of_work(rt.sessions) as s:
        bar = await s.get(LineBar, line.id, populate_existing=True)
    assert bar is not None
    assert bar.barred is False
    assert [(j["action"], j["generation"]) for j in await _bar_jobs(rt)] == [
        ("bar_data", 1), ("unbar_data", 1)
    ]
    r = await send(client, key, [record(line, rid="d12", units=10 * MB)])
    assert r.json()["results"][0]["wallet"] == {"units": 10 * MB, "minor": 50, "currency": "CNY"}
    assert await wallet_minor(rt, me) == 2950
    await deliver()
    assert {j["state"] for j in await _bar_jobs(rt)} == {"sent"}

    # A record from before the period, a line unknown, a duplicate.
    r = await send(client, key, [
        record(line, rid="old", at=start - timedelta(days=2)),
        record(None, rid="nobody", msisdn="+8613000000000"),
        record(line, rid="d12"),
    ])
    assert _statuses(r) == ["out_of_order", "unknown_line", "duplicate"]

    # Every bucket, as the month leaves it (the Japan pack's 7 days ran out on day 9: the
    # worker's expiry took its last 150 MB).
    now_buckets = await buckets(rt, line)
    assert {b.id: b.remaining for b in now_buckets["data"]} == {
        plan_data.id: 0, addon_data.id: 0, jp_data.id: 0
    }
    assert now_buckets["voice"][0].remaining == 6000 - 61
    assert (await buckets(rt, line))["voice"][0].id == plan_voice.id
    # One usage entry per bucket per batch: the plan's data saw five batches.
    assert await entries(rt, plan_data.id) == [
        GB, -300 * MB, -100 * MB, -100 * MB, -524 * MB
    ]
    assert await entries(rt, addon_data.id) == [500 * MB, -500 * MB]
    assert await entries(rt, jp_data.id) == [200 * MB, -50 * MB, -150 * MB]
    async with unit_of_work(rt.sessions) as s:
        wallet_deltas = [int(d) for d in (await s.scalars(
            select(BalanceEntry.delta).where(
                BalanceEntry.account_id == me, BalanceEntry.bucket_id.not_in(
                    [plan_data.id, addon_data.id, jp_data.id, plan_voice.id]),
                BalanceEntry.reason.in_([EntryReason.usage, EntryReason.topup,
                                         EntryReason.adjust]),
            ).order_by(BalanceEntry.id)
        )).all()]
        stored = (await s.execute(
            select(UsageRecord.record_id, UsageRecord.status, UsageRecord.wallet_minor)
            .order_by(UsageRecord.record_id)
        )).all()
    assert wallet_deltas == [2000, -50, -880, -1, -1069, 3000, -50]
    assert [tuple(x) for x in stored] == sorted([
        ("d1", "charged", 0), ("d3", "charged", 0), ("hk", "charged", 0), ("jp", "charged", 0),
        ("us-data", "charged", 50), ("us-voice", "blocked", 0), ("call", "charged", 0),
        ("d10", "charged", 880), ("d10b", "charged", 1), ("d11", "partial", 1069),
        ("d11b", "blocked", 0), ("d12", "charged", 50), ("old", "out_of_order", 0),
    ])

    # Every notice, once: the add-on's and the plan's thresholds, the overage warning
    # (before the first overage charge's batch was answered), the wallet running low,
    # the bar and its lift.
    events = await _notices(rt)
    keys = {k for _, k in events}
    assert f"data_threshold:{line.id}:{addon_data.id}:80" in keys
    assert f"data_threshold:{line.id}:{addon_data.id}:100" in keys
    assert f"data_threshold:{line.id}:{plan_data.id}:80" in keys
    assert f"data_threshold:{line.id}:{plan_data.id}:100" in keys
    usage_events = [e for e, _ in events if e in {
        "data_threshold", "overage_started", "wallet_low", "line_barred", "line_unbarred"}]
    assert sorted(usage_events) == sorted([
        "data_threshold", "data_threshold", "data_threshold", "data_threshold",
        "overage_started", "wallet_low", "line_barred", "line_unbarred",
    ])
    assert await drift(rt) == []
