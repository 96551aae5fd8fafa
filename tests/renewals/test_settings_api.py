"""Auto-renew settings through the API: on, off, funding, the next renewal date and amount,
and nobody but the owner."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import select

from openmvno import clock
from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.lines.models import Line, LineState
from openmvno.renewals.models import AutoRenewSetting
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.orders.helpers import give_line, seed_plans, subscriber


async def _line_on_plan(rt: Runtime, account_id: uuid.UUID, *, days: int = 30) -> Line:
    async with unit_of_work(rt.sessions) as s:
        plan = await s.scalar(select(Plan).where(Plan.code == "M30"))
        assert plan is not None
        plan_id = plan.id
    line = await give_line(rt, account_id, expires_at=clock.now() + timedelta(days=days))
    async with unit_of_work(rt.sessions) as s:
        found = await s.get(Line, line.id)
        assert found is not None
        found.plan_id = plan_id
    return line


async def test_turn_on_and_off_with_the_wallet(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await _line_on_plan(rt, me)
    url = f"/api/v1/lines/{line.id}/auto-renew"

    r = await client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is False and r.json()["next_renewal_at"] is None
    assert r.json()["amount_minor"] == 5000 and r.json()["currency"] == "CNY"

    r = await client.put(url, json={"enabled": True, "funding": "wallet"}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    expiry = frozen.now + timedelta(days=30)
    assert body["enabled"] is True and body["funding"] == "wallet" and body["card"] is None
    assert body["next_renewal_at"].startswith(expiry.strftime("%Y-%m-%dT%H:%M"))
    attempt = frozen.now + timedelta(days=30) - timedelta(hours=24)
    assert body["next_attempt_at"].startswith(attempt.strftime("%Y-%m-%dT%H:%M"))
    assert body["plan_code"] == "M30" and body["plan_name"] == "Enjoy 30 days"

    line_view = await client.get(f"/api/v1/lines/{line.id}", headers=headers)
    assert line_view.json()["auto_renew"] is True

    r = await client.put(url, json={"enabled": False}, headers=headers)
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert r.json()["next_renewal_at"] is None
    async with unit_of_work(rt.sessions) as s:
        setting = await s.scalar(select(AutoRenewSetting))
        assert setting is not None and setting.next_attempt_at is None


async def test_only_the_owner(client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock) -> None:
    await seed_plans(rt)
    owner, me = await subscriber(client)
    other, _ = await subscriber(client)
    line = await _line_on_plan(rt, me)
    url = f"/api/v1/lines/{line.id}/auto-renew"
    assert (await client.get(url)).status_code == 401
    for method in ("GET", "PUT"):
        r = await client.request(method, url, json={"enabled": True}, headers=other)
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "line_not_found"
    assert (await client.get(url, headers=owner)).json()["enabled"] is False


async def test_refusals(client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await _line_on_plan(rt, me)
    url = f"/api/v1/lines/{line.id}/auto-renew"
    r = await client.put(url, json={"enabled": True, "funding": "card"}, headers=headers)
    assert r.status_code == 422 and r.json()["code"] == "card_required"
    r = await client.put(url, json={"enabled": True, "card_id": str(uuid.uuid4())},
                         headers=headers)
    assert r.status_code == 404 and r.json()["code"] == "card_not_found"
    r = await client.put(url, json={"enabled": "yes"}, headers=headers)
    assert r.status_code == 422
    r = await client.put(url, json={"enabled": True, "funding": "cash"}, headers=headers)
    assert r.status_code == 422
    r = await client.put(url, json={"enabled": True, "extra": 1}, headers=headers)
    assert r.status_code == 422

    bare = await give_line(rt, me, state=LineState.inventory)
    r = await client.put(f"/api/v1/lines/{bare.id}/auto-renew", json={"enabled": True},
                         headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "auto_renew_no_plan"
    closed = await give_line(rt, me, state=LineState.terminated)
    r = await client.put(f"/api/v1/lines/{closed.id}/auto-renew", json={"enabled": True},
                         headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "line_terminated"
    r = await client.put(url, json={"enabled": True}, headers={**headers, "Accept-Language": "zh-CN"})
    assert r.status_code == 200


async def test_turned_on_late_tries_at_once(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await _line_on_plan(rt, me, days=0)
    async with unit_of_work(rt.sessions) as s:
        found = await s.get(Line, line.id)
        assert found is not None
        found.expires_at = frozen.now + timedelta(hours=5)
    r = await client.put(f"/api/v1/lines/{line.id}/auto-renew", json={"enabled": True},
                         headers=headers)
    assert r.status_code == 200
    assert r.json()["next_attempt_at"].startswith(frozen.now.strftime("%Y-%m-%dT%H:%M"))
