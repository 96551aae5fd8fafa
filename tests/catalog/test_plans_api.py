"""Plans: the public list in the caller's language, and the audited admin API."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from openmvno.accounts.models import Role
from openmvno.audit.models import AuditEvent
from openmvno.db import unit_of_work
from openmvno.runtime import Runtime
from tests.catalog.helpers import DATA_10GB, make_plan, staff_headers
from tests.conftest import register_and_login

VOICE = {
    "code": "VOICE300", "kind": "voice", "name_zh": "300 分钟通话", "name_en": "300 minutes",
    "price_minor": 2000, "voice_minutes": 300, "validity_days": 30,
}


async def test_public_list_shows_price_validity_allowances_and_terms_in_my_language(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await make_plan(rt)
    await make_plan(rt, **VOICE)

    r = await client.get("/api/v1/plans", headers={"Accept-Language": "zh-CN"})
    assert r.status_code == 200
    data = next(p for p in r.json() if p["code"] == "DATA10")
    assert data["name"] == "10GB 月包"
    assert data["terms"] == "30 天有效，用完即停。"
    assert data["price"] == {"minor": 3000, "currency": "CNY", "formatted": "¥30.00"}
    assert data["validity_days"] == 30
    assert data["allowances"]["data_bytes"] == 10 * 1024**3
    assert data["allowances"]["data"] == "10 GB"

    r = await client.get("/api/v1/plans?kind=voice&lang=en")
    assert [p["code"] for p in r.json()] == ["VOICE300"]
    assert r.json()[0]["name"] == "300 minutes"
    assert r.json()[0]["allowances"]["voice_seconds"] == 18000

    r = await client.get("/api/v1/plans/DATA10?lang=en")
    assert r.json()["terms"] == "Valid 30 days; stops when used up."
    assert (await client.get("/api/v1/plans/NOPE")).status_code == 404


async def test_admin_creates_updates_and_retires_with_an_audit_trail(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    admin = await staff_headers(client, rt, Role.admin)
    r = await client.post("/api/v1/admin/plans", json=DATA_10GB, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["active"] is True

    r = await client.post("/api/v1/admin/plans", json=DATA_10GB, headers=admin)
    assert r.status_code == 409
    assert r.json()["code"] == "plan_exists"

    r = await client.patch(
        "/api/v1/admin/plans/DATA10", json={"price_minor": 2800, "reason": "promo"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["price"]["minor"] == 2800

    r = await client.patch("/api/v1/admin/plans/DATA10", json={"data_bytes": 0}, headers=admin)
    assert r.status_code == 422
    assert r.json()["code"] == "plan_invalid"

    r = await client.post(
        "/api/v1/admin/plans/DATA10/retire", json={"reason": "replaced"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["active"] is False

    assert (await client.get("/api/v1/plans")).json() == []
    assert (await client.get("/api/v1/plans/DATA10")).json()["active"] is False
    listed = (await client.get("/api/v1/admin/plans", headers=admin)).json()
    assert [p["code"] for p in listed] == ["DATA10"]

    async with unit_of_work(rt.sessions) as session:
        events = (await session.scalars(select(AuditEvent).order_by(AuditEvent.at))).all()
    assert [e.action for e in events] == ["plan.create", "plan.update", "plan.retire"]
    assert events[1].reason == "promo"
    assert events[1].data["before"] == {"price_minor": 3000}
    assert events[2].reason == "replaced"
    assert all(e.actor_id is not None and e.subject_id == "DATA10" for e in events)


async def test_invalid_plans_are_refused_with_the_reason(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    admin = await staff_headers(client, rt, Role.admin)
    bad = [
        DATA_10GB | {"price_minor": 30.5},
        DATA_10GB | {"kind": "voice"},
        DATA_10GB | {"kind": "topup", "validity_days": 0},
        DATA_10GB | {"overage_rule": "charge_wallet"},
        DATA_10GB | {"code": "bad code!"},
    ]
    for body in bad:
        r = await client.post("/api/v1/admin/plans", json=body, headers=admin)
        assert r.status_code == 422, body
    topup = {
        "code": "TOPUP50", "kind": "topup", "name_zh": "充值 50 元", "name_en": "Top-up ¥50",
        "price_minor": 5000, "validity_days": 0,
    }
    assert (await client.post("/api/v1/admin/plans", json=topup, headers=admin)).status_code == 201


async def test_only_admins_may_change_plans(client: httpx.AsyncClient, rt: Runtime) -> None:
    assert (await client.post("/api/v1/admin/plans", json=DATA_10GB)).status_code == 401
    subscriber = await register_and_login(client)
    r = await client.post("/api/v1/admin/plans", json=DATA_10GB, headers=subscriber)
    assert r.status_code == 403
    agent = await staff_headers(client, rt, Role.agent)
    r = await client.post("/api/v1/admin/plans/DATA10/retire", headers=agent)
    assert r.status_code == 403
