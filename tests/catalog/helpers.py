"""Shared setup for catalog and lines tests: staff logins and plans."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from openmvno.accounts import service as accounts
from openmvno.accounts.models import Role
from openmvno.catalog import service as catalog
from openmvno.catalog.models import Plan
from openmvno.catalog.schemas import PlanIn
from openmvno.db import unit_of_work
from openmvno.runtime import Runtime

DATA_10GB: dict[str, Any] = {
    "code": "DATA10",
    "kind": "data",
    "name_zh": "10GB 月包",
    "name_en": "10 GB monthly",
    "price_minor": 3000,
    "validity_days": 30,
    "data_gb": 10,
    "terms_zh": "30 天有效，用完即停。",
    "terms_en": "Valid 30 days; stops when used up.",
}


async def staff_headers(client: httpx.AsyncClient, rt: Runtime, role: Role) -> dict[str, str]:
    email = f"{role.value}-{uuid.uuid4().hex[:8]}@example.org"
    async with unit_of_work(rt.sessions) as session:
        await accounts.create_staff(
            session, rt, name="Staff Member", email=email, password="Staff-pass-2026", role=role
        )
    r = await client.post("/api/v1/auth/token", json={"login": email, "password": "Staff-pass-2026"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def make_plan(rt: Runtime, **overrides: Any) -> Plan:
    async with unit_of_work(rt.sessions) as session:
        return await catalog.create_plan(
            session, PlanIn.model_validate(DATA_10GB | overrides), actor=None,
            default_currency="CNY",
        )
