"""Random usage sequences against a simple model: a line with an add-on, its plan and a
wallet paying overage; records in random batches, some repeated. The answers, balances
and the ledger's books must match the model exactly."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openmvno import clock
from openmvno.catalog.models import OverageRule, PlanKind
from openmvno.runtime import Runtime
from tests.orders.helpers import fund_wallet, wallet_minor
from tests.usage.helpers import (
    MB,
    buckets,
    drift,
    grant,
    line_with_plan,
    make_peer,
    make_plan,
    record,
    send,
)

RECORD = st.tuples(st.integers(0, 3 * MB), st.integers(0, 9))  # units, repeat an earlier one?
BATCHES = st.lists(st.lists(RECORD, min_size=1, max_size=12), min_size=1, max_size=5)


def _cost(units: int, rate: int) -> int:
    kb = -(-units // 1024)
    return -(-(kb * rate) // 1024)


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=BATCHES, wallet=st.integers(0, 3000), rate=st.integers(0, 40),
       pays=st.booleans())
async def test_random_usage_matches_the_model(
    client: httpx.AsyncClient, rt: Runtime, batches: list[list[tuple[int, int]]], wallet: int,
    rate: int, pays: bool,
) -> None:
    run = uuid.uuid4().hex[:8]
    plan = await make_plan(
        rt, f"P-{run}", data_bytes=4 * MB,
        overage_rule=OverageRule.charge_wallet if pays else OverageRule.block,
        overage_rates={"data_mb": rate} if pays else {},
    )
    addon = await make_plan(rt, f"A-{run}", kind=PlanKind.addon, data_bytes=2 * MB)
    line = await line_with_plan(rt, plan)
    [addon_bucket] = await grant(rt, line, addon, days=3)
    assert line.account_id is not None
    if wallet:
        await fund_wallet(rt, line.account_id, wallet)
    key = await make_peer(rt)
    left = {"addon": 2 * MB, "plan": 4 * MB, "wallet": wallet}
    sent: list[str] = []
    at = clock.now() - timedelta(minutes=5)
    for batch in batches:
        records, expected = [], []
        in_batch: set[str] = set()
        for n, (units, repeat) in enumerate(batch):
            rid = sent[n % len(sent)] if repeat == 0 and sent else f"{run}-{len(sent)}-{n}"
            records.append(record(line, rid=rid, units=units, at=at))
            if rid in sent or rid in in_batch:
                expected.append(("duplicate", None, None))
                continue
            in_batch.add(rid)
            rest = units
            for name in ("addon", "plan"):
                take = min(rest, left[name])
                left[name] -= take
                rest -= take
            paid = 0
            if rest and pays:
                cost = _cost(rest, rate)
                if cost <= left["wallet"]:
                    paid, got = cost, rest
                else:
                    kb = min(-(-rest // 1024), left["wallet"] * 1024 // rate)
                    got = min(rest, kb * 1024)
                    paid = _cost(got, rate)
                left["wallet"] -= paid
                rest -= got
            status = "charged" if rest == 0 else ("partial" if rest < units else "blocked")
            expected.append((status, units - rest, paid))
        r = await send(client, key, records)
        assert r.status_code == 200, r.text
        got_answers = [
            (x["status"], x.get("charged_units"), x.get("wallet", {}).get("minor", 0)
             if x["status"] != "duplicate" else None)
            for x in r.json()["results"]
        ]
        assert got_answers == expected
        sent += [rec["record_id"] for rec in records if rec["record_id"] not in sent]
    now = await buckets(rt, line)
    remaining = {b.id: b.remaining for b in now["data"]}
    assert remaining[addon_bucket.id] == left["addon"]
    assert sum(remaining.values()) - left["addon"] == left["plan"]
    assert await wallet_minor(rt, line.account_id) == left["wallet"]
    assert await drift(rt) == []
