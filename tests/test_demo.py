"""The demo operator loads, can be used at once, and loading it again changes nothing."""

from __future__ import annotations

import httpx
from rich.console import Console
from sqlalchemy import func, select, text

from openmvno.catalog.models import PlanKind
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.demo import load_demo, print_demo
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.models import Base
from openmvno.runtime import Runtime


async def _snapshot(rt: Runtime) -> dict[str, object]:
    out: dict[str, object] = {}
    async with unit_of_work(rt.sessions) as session:
        for table in Base.metadata.sorted_tables:
            out[table.name] = await session.scalar(select(func.count()).select_from(table))
        out["lines"] = (await session.execute(text(
            "SELECT iccid, state, account_id, plan_id, expires_at, updated_at FROM lines ORDER BY iccid"
        ))).all()
        out["plans"] = (await session.execute(
            text("SELECT code, price_minor, active, updated_at FROM plans ORDER BY code")
        )).all()
    return out


async def test_demo_loads_everything_and_is_idempotent(
    client: httpx.AsyncClient, rt: Runtime, settings: Settings
) -> None:
    first = await load_demo(settings)
    assert first.changed
    before = await _snapshot(rt)
    second = await load_demo(settings)
    assert not second.changed
    assert await _snapshot(rt) == before
    assert second.logins == first.logins
    assert second.try_serial == first.try_serial

    plans = (await client.get("/api/v1/plans?lang=zh-CN")).json()
    assert {p["kind"] for p in plans} == {k.value for k in PlanKind}
    addon = next(p for p in plans if p["kind"] == "addon")
    assert "加油包" in addon["name"] and addon["validity_days"] == 7
    assert any(p["roaming_zones"] for p in plans)

    async with unit_of_work(rt.sessions) as session:
        stock = (await session.execute(
            select(Line.kind, func.count())
            .where(Line.state == LineState.inventory, Line.account_id.is_(None))
            .group_by(Line.kind)
        )).all()
    assert dict(stock) == {LineKind.esim: 5, LineKind.sim: 5, LineKind.datacard: 5}

    # Every printed login works; the subscriber has an active line and a bound card.
    logins = {x.role: x for x in first.logins}
    for role in ("agent", "admin"):
        r = await client.post(
            "/api/v1/auth/token",
            json={"login": logins[role].login, "password": logins[role].password},
        )
        assert r.status_code == 200, role
    r = await client.post(
        "/api/v1/auth/token",
        json={"login": "13800000000", "password": logins["subscriber"].password},
    )
    me = {"Authorization": f"Bearer {r.json()['access_token']}"}
    mine = {x["kind"]: x for x in (await client.get("/api/v1/me/lines", headers=me)).json()}
    assert mine["esim"]["state"] == "active" and mine["esim"]["may_use_service"] is True
    assert mine["esim"]["plan"]["code"] == "DATA-10G-30D"
    assert mine["datacard"]["device_serial"] == "DC20260901"

    # The printed card and PIN really bind.
    r = await client.post(
        "/api/v1/devices/bind",
        json={"serial": first.try_serial, "secret": first.try_secret},
        headers=me,
    )
    assert r.status_code == 200, r.text

    console = Console(record=True, width=120)
    print_demo(console, settings, first, host="0.0.0.0", port=8000)  # noqa: S104
    out = console.export_text()
    for needle in ("http://127.0.0.1:8000/docs", "/dev/outbox", "admin@demo.openmvno",
                   logins["admin"].password, str(first.try_serial)):
        assert needle in out
