"""Shared by the usage tests: a peer with a key, a line with a plan, records, balances."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from openmvno import clock
from openmvno.catalog.models import OverageRule, Plan, PlanKind
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BalanceEntry, Bucket, BucketKind
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.runtime import Runtime
from openmvno.usage import peers

MB = 1024**2
GB = 1024**3


async def make_peer(rt: Runtime, name: str | None = None, scopes: list[str] | None = None) -> str:
    async with unit_of_work(rt.sessions) as s:
        _peer, key = await peers.create(
            s, name=name or f"pgw-{uuid.uuid4().hex[:6]}", scopes=scopes or ["usage:write"]
        )
    return key


async def make_plan(rt: Runtime, code: str, **kw: Any) -> Plan:
    values: dict[str, Any] = {
        "kind": PlanKind.data, "name_zh": code, "name_en": code, "price_minor": 3000,
        "currency": "CNY", "validity_days": 30, "data_bytes": 0, "voice_seconds": 0,
        "sms_count": 0, "roaming_zones": [], "overage_rule": OverageRule.block,
        "overage_rates": {}, "roaming_rates": {},
    }
    values.update(kw)
    plan = Plan(code=code, **values)
    async with unit_of_work(rt.sessions) as s:
        s.add(plan)
    return plan


async def account(rt: Runtime) -> uuid.UUID:
    from openmvno.accounts.models import Account

    acc = Account(name="Usage Tester", phone=f"+86139{uuid.uuid4().int % 10**8:08d}",
                  password_hash="x")
    async with unit_of_work(rt.sessions) as s:
        s.add(acc)
    return acc.id


async def line_with_plan(
    rt: Runtime, plan: Plan, account_id: uuid.UUID | None = None, *,
    valid_from: datetime | None = None, state: LineState = LineState.active,
) -> Line:
    account_id = account_id or await account(rt)
    start = valid_from or clock.now() - timedelta(days=1)
    until = start + timedelta(days=plan.validity_days)
    i = uuid.uuid4().int % 10**9
    line = Line(kind=LineKind.sim, iccid=f"8986002{i:012d}", msisdn=f"+86172{i % 10**8:08d}",
                account_id=account_id, state=state, expires_at=until, plan_id=plan.id)
    async with unit_of_work(rt.sessions) as s:
        s.add(line)
        await s.flush()
        await ledger.grant_plan(
            s, account_id=account_id, line_id=line.id, plan=plan, order_id=None,
            valid_from=start, valid_until=until, key=f"test-grant:{line.id}",
        )
    return line


async def grant(rt: Runtime, line: Line, plan: Plan, *, days: int | None = None,
                priority: int = 50, start: datetime | None = None) -> list[Bucket]:
    start = start or clock.now() - timedelta(hours=1)
    until = start + timedelta(days=days if days is not None else plan.validity_days)
    assert line.account_id is not None
    async with unit_of_work(rt.sessions) as s:
        return await ledger.grant_plan(
            s, account_id=line.account_id, line_id=line.id, plan=plan, order_id=None,
            valid_from=start, valid_until=until, key=f"test-grant:{uuid.uuid4()}",
            priority=priority,
        )


def record(line: Line | None = None, *, rid: str | None = None, kind: str = "data",
           units: int = MB, at: datetime | None = None, zone: str | None = None,
           msisdn: str | None = None, by_iccid: bool = False) -> dict[str, Any]:
    """A usage record naming ``line`` by MSISDN (by ICCID with ``by_iccid``)."""
    out: dict[str, Any] = {
        "record_id": rid or uuid.uuid4().hex, "type": kind, "units": units,
        "started_at": (at or clock.now() - timedelta(minutes=1)).isoformat(),
    }
    if by_iccid and line is not None:
        out["iccid"] = line.iccid
    else:
        out["msisdn"] = msisdn or (line.msisdn if line else "+8617000000000")
    if zone:
        out["zone"] = zone
    return out


async def send(client: httpx.AsyncClient, key: str, records: list[dict[str, Any]]) -> httpx.Response:
    return await client.post("/api/v1/usage", json={"records": records},
                             headers={"X-API-Key": key})


async def buckets(rt: Runtime, line: Line) -> dict[str, list[Bucket]]:
    async with unit_of_work(rt.sessions) as s:
        rows = (await s.scalars(
            select(Bucket).where(Bucket.line_id == line.id).order_by(Bucket.valid_from, Bucket.priority)
        )).all()
    out: dict[str, list[Bucket]] = {"data": [], "voice": [], "sms": []}
    for b in rows:
        out[BucketKind(b.kind).value].append(b)
    return out


async def remaining(rt: Runtime, bucket_id: uuid.UUID) -> int:
    async with unit_of_work(rt.sessions) as s:
        found = await s.scalar(select(Bucket.remaining).where(Bucket.id == bucket_id))
    assert found is not None
    return int(found)


async def entries(rt: Runtime, bucket_id: uuid.UUID) -> list[int]:
    async with unit_of_work(rt.sessions) as s:
        return [int(d) for d in (await s.scalars(
            select(BalanceEntry.delta).where(BalanceEntry.bucket_id == bucket_id)
            .order_by(BalanceEntry.id)
        )).all()]


async def drift(rt: Runtime) -> list[Any]:
    async with unit_of_work(rt.sessions) as s:
        return await ledger.check(s)
