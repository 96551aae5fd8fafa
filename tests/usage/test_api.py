"""The usage API at its edge: API keys, scopes and revocation; validation as problem
details; every record answered; the history per line, day and kind."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from typer.testing import CliRunner

from openmvno import clock
from openmvno.db import unit_of_work
from openmvno.formatting import zone
from openmvno.runtime import Runtime
from openmvno.usage import peers
from tests.orders.helpers import subscriber
from tests.usage.helpers import (
    GB,
    MB,
    buckets,
    line_with_plan,
    make_peer,
    make_plan,
    record,
    send,
)


async def test_no_key_a_wrong_key_and_a_revoked_key_are_refused(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    plan = await make_plan(rt, "U-AUTH", data_bytes=GB)
    line = await line_with_plan(rt, plan)
    body = {"records": [record(line)]}
    r = await client.post("/api/v1/usage", json=body)
    assert (r.status_code, r.json()["code"]) == (401, "api_key_missing")
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post("/api/v1/usage", json=body, headers={"X-API-Key": "omp_" + "x" * 43})
    assert (r.status_code, r.json()["code"]) == (401, "api_key_invalid")
    key = await make_peer(rt, name="pgw-revoked")
    assert (await send(client, key, [record(line)])).status_code == 200
    async with unit_of_work(rt.sessions) as s:
        await peers.revoke(s, name="pgw-revoked")
    r = await send(client, key, [record(line)])
    assert (r.status_code, r.json()["code"]) == (401, "api_key_invalid")
    # A subscriber's bearer token is no API key.
    headers, _ = await subscriber(client)
    r = await client.post("/api/v1/usage", json=body, headers={"Authorization": headers["Authorization"]})
    assert r.status_code == 401


async def test_a_key_without_the_scope_is_forbidden(client: httpx.AsyncClient, rt: Runtime) -> None:
    async with unit_of_work(rt.sessions) as s:
        peer, key = await peers.create(s, name="pgw-noscope", scopes=["usage:write"])
        peer.scopes = []
    r = await send(client, key, [record(None)])
    assert (r.status_code, r.json()["code"]) == (403, "scope_missing")
    async with unit_of_work(rt.sessions) as s:
        with pytest.raises(Exception, match="scope_unknown"):
            await peers.create(s, name="pgw-bad", scopes=["usage:admin"])


async def test_only_the_hash_of_a_key_is_stored(rt: Runtime) -> None:
    async with unit_of_work(rt.sessions) as s:
        peer, key = await peers.create(s, name="pgw-hash")
    assert key.startswith("omp_") and len(key) > 40
    assert peer.key_hash == peers.hash_key(key) and key not in peer.key_hash
    assert peer.key_prefix == key[:12]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"units": -1}, "units"),
        ({"units": 1.5}, "units"),
        ({"units": "5"}, "units"),
        ({"units": 2**53}, "units"),
        ({"type": "mms"}, "type"),
        ({"started_at": "2026-12-01T10:00:00"}, "started_at"),  # no offset: ambiguous
        ({"started_at": "yesterday"}, "started_at"),
        ({"record_id": ""}, "record_id"),
        ({"record_id": "a\u0000b"}, "record_id"),
        ({"record_id": "x" * 65}, "record_id"),
        ({"record_id": "空格 id"}, "record_id"),
        ({"msisdn": "13800000000"}, "msisdn"),  # not E.164
        ({"zone": "hk"}, "zone"),
        ({"rating_group": -1}, "rating_group"),
        ({"extra": 1}, "extra"),
        ({"iccid": "89860000000000000001"}, ""),  # both msisdn and iccid
    ],
)
async def test_bad_records_are_a_problem_naming_the_field(
    client: httpx.AsyncClient, rt: Runtime, change: dict[str, object], where: str
) -> None:
    key = await make_peer(rt)
    bad = record(None) | change
    r = await send(client, key, [record(None), bad])
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_failed"
    fields = [e["field"] for e in problem["errors"]]
    assert all(f.startswith("records.1") for f in fields), fields
    if where:
        assert any(f.split(".")[2:3] == [where] for f in fields), fields


async def test_empty_oversized_and_non_json_batches(client: httpx.AsyncClient, rt: Runtime) -> None:
    key = await make_peer(rt)
    h = {"X-API-Key": key, "Content-Type": "application/json"}
    assert (await client.post("/api/v1/usage", json={"records": []}, headers=h)).status_code == 422
    r = await client.post("/api/v1/usage", content=b"{not json", headers=h)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json")
    many = {"records": [record(None, rid=f"r{i}") for i in range(10_001)]}
    r = await client.post("/api/v1/usage", content=json.dumps(many).encode(), headers=h)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["records"]
    # The body cap of this path (4 MB by default, not the 64 KB of every other path).
    from openmvno.app import create_app

    rt.settings.usage_max_body_bytes = 2000
    small = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=rt)),
                              base_url="http://testserver")
    big = {"records": [record(None, rid=f"r{i}") for i in range(100)]}
    async with small:
        r = await small.post("/api/v1/usage", json=big, headers=h)
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
    r = await client.post("/api/v1/usage", json=big, headers=h)  # the default cap
    assert r.status_code == 200


async def test_a_full_batch_of_ten_thousand_is_answered_record_by_record(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    plan = await make_plan(rt, "U-FULL", data_bytes=GB)
    line = await line_with_plan(rt, plan)
    key = await make_peer(rt)
    records = [record(line, rid=f"full-{i}", units=1024) for i in range(9_999)]
    records.append(record(None, rid="nobody", msisdn="+8613999999999"))
    r = await send(client, key, records)
    assert r.status_code == 200
    body = r.json()
    assert body["counts"] == {"charged": 9_999, "unknown_line": 1}
    assert [x["record_id"] for x in body["results"]] == [x["record_id"] for x in records]


async def test_iccid_names_a_line_and_inactive_lines_are_answered(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    from openmvno.lines.models import LineState

    plan = await make_plan(rt, "U-ICCID", data_bytes=GB)
    line = await line_with_plan(rt, plan)
    gone = await line_with_plan(rt, plan, state=LineState.suspended)
    key = await make_peer(rt)
    by_iccid = record(line, by_iccid=True)
    future = record(line, at=clock.now() + timedelta(hours=1))
    r = await send(client, key, [by_iccid, record(gone), future])
    assert [x["status"] for x in r.json()["results"]] == [
        "charged", "line_not_active", "out_of_order"
    ]


async def test_a_line_named_by_msisdn_and_by_iccid_in_one_batch_is_one_balance(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    plan = await make_plan(rt, "U-BOTH", data_bytes=GB)
    line = await line_with_plan(rt, plan)
    key = await make_peer(rt)
    by_iccid = record(line, units=2 * MB, by_iccid=True)
    r = await send(client, key, [record(line, units=MB), by_iccid])
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["charged", "charged"]
    (data,) = (await buckets(rt, line))["data"]
    assert [x["buckets"] for x in results] == [
        [{"bucket_id": str(data.id), "units": MB}],
        [{"bucket_id": str(data.id), "units": 2 * MB}],
    ]
    assert data.remaining == GB - 3 * MB


async def test_history_per_day_and_kind_for_the_owner_only(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    headers, me = await subscriber(client)
    plan = await make_plan(rt, "U-HIST", data_bytes=GB, voice_seconds=3600)
    line = await line_with_plan(rt, plan, me, valid_from=clock.now() - timedelta(days=5))
    key = await make_peer(rt)
    # Noon of the operator's day (the last one that has begun): each record's day is the
    # same whatever the hour the test runs at (near midnight "a minute ago" and "a day
    # ago" would share a day).
    now = clock.now()
    noon = now.astimezone(zone(rt.settings.timezone)).replace(
        hour=12, minute=0, second=0, microsecond=0
    )
    if noon > now:
        noon -= timedelta(days=1)
    await send(client, key, [
        record(line, units=10 * MB, at=noon - timedelta(days=2)),
        record(line, units=5 * MB, at=noon - timedelta(days=2)),
        record(line, kind="voice", units=90, at=noon - timedelta(days=1)),
        record(line, units=MB, at=noon),
    ])
    r = await client.get(f"/api/v1/lines/{line.id}/usage", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals"] == {"data": 16 * MB, "voice": 90, "sms": 0}
    assert [(d["kind"], d["units"], d["records"]) for d in body["days"]] == [
        ("data", 15 * MB, 2), ("voice", 90, 1), ("data", MB, 1)
    ]
    assert body["to"] >= body["days"][-1]["day"]
    r = await client.get(f"/api/v1/lines/{line.id}/usage?from=2026-01-02&to=2026-01-01",
                         headers=headers)
    assert (r.status_code, r.json()["code"]) == (422, "range_invalid")
    r = await client.get(f"/api/v1/lines/{line.id}/usage?from=2020-01-01&to=2026-01-01",
                         headers=headers)
    assert (r.status_code, r.json()["code"]) == (422, "range_too_long")
    other, _ = await subscriber(client)
    assert (await client.get(f"/api/v1/lines/{line.id}/usage", headers=other)).status_code == 404


def test_peers_cli_creates_lists_and_revokes(settings: object, tmp_path: object) -> None:
    from openmvno.cli import app

    runner = CliRunner()
    env = {"OPENMVNO_DATABASE_URL": settings.database_url,  # type: ignore[attr-defined]
           "OPENMVNO_ENVIRONMENT": "development", "OPENMVNO_DATA_DIR": str(tmp_path)}
    made = runner.invoke(app, ["peers", "create", "pgw-cli"], env=env)
    assert made.exit_code == 0, made.output
    key = made.output.strip().splitlines()[-1]
    assert key.startswith("omp_")
    listed = runner.invoke(app, ["peers", "list"], env=env)
    assert "pgw-cli" in listed.output and key[:12] in listed.output
    assert key not in listed.output
    again = runner.invoke(app, ["peers", "create", "pgw-cli"], env=env)
    assert again.exit_code == 1 and "peer_exists" in again.output
    revoked = runner.invoke(app, ["peers", "revoke", "pgw-cli"], env=env)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    missing = runner.invoke(app, ["peers", "revoke", "nobody"], env=env)
    assert missing.exit_code == 1


async def test_simulate_drives_the_usage_api_and_balances_move(rt: Runtime) -> None:
    from openmvno.app import create_app
    from openmvno.usage.cli import simulate
    from tests.usage.helpers import buckets

    plan = await make_plan(rt, "U-SIM", data_bytes=100 * GB, voice_seconds=10**6,
                           sms_count=10**4)
    lines = [await line_with_plan(rt, plan) for _ in range(3)]
    key = await make_peer(rt)
    transport = httpx.ASGITransport(app=create_app(runtime=rt))
    totals = await simulate("http://testserver", key, [x.msisdn for x in lines], rate=400,
                            duration=0.5, batch=50, seed=7, transport=transport)
    assert totals == {"charged": 200}
    for x in lines:
        now = await buckets(rt, x)
        used = sum(b.initial - b.remaining for kind in ("data", "voice", "sms") for b in now[kind])
        assert used > 0
