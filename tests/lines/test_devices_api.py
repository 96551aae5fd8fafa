"""Binding a SIM or data card by serial and PIN; my lines; unbinding."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from openmvno.db import unit_of_work
from openmvno.lines.models import Line, LineState
from openmvno.lines.states import transition
from openmvno.runtime import Runtime
from tests.catalog.helpers import make_plan
from tests.conftest import FrozenClock, register_and_login
from tests.lines.helpers import iccid, load


async def _stock(rt: Runtime) -> None:
    await load(rt, [
        f"datacard,{iccid(1)},17000000001,DC-2026-0001,,482193",
        f"sim,{iccid(2)},17000000002,SIM-0002,,",
    ])


async def test_bind_with_full_width_serial_then_it_is_in_my_lines(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _stock(rt)
    me = await register_and_login(client)
    r = await client.post(
        "/api/v1/devices/bind", json={"serial": "ｄｃ－２０２６ ０００１", "secret": "４８２ １９３"},
        headers=me,
    )
    assert r.status_code == 200, r.text
    line = r.json()
    assert line["device_serial"] == "DC20260001"
    assert line["state"] == "inventory"  # bound, but no plan bought yet
    assert line["may_use_service"] is False

    r = await client.get("/api/v1/me/lines", headers=me)
    assert [x["id"] for x in r.json()] == [line["id"]]
    assert r.json()[0]["msisdn"] == "+8617000000001"

    # Binding my own device again is harmless.
    r = await client.post(
        "/api/v1/devices/bind", json={"serial": "DC-2026-0001", "secret": "482193"}, headers=me
    )
    assert r.status_code == 200


async def test_sim_without_pin_binds_with_last_six_iccid_digits(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _stock(rt)
    me = await register_and_login(client)
    r = await client.post(
        "/api/v1/devices/bind", json={"serial": "sim0002", "secret": iccid(2)[-6:]}, headers=me
    )
    assert r.status_code == 200, r.text


async def test_unknown_serial_and_wrong_pin_get_clear_messages(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _stock(rt)
    me = await register_and_login(client)
    r = await client.post(
        "/api/v1/devices/bind?lang=zh-CN", json={"serial": "DC-2026-OOO1", "secret": "482193"},
        headers=me,
    )
    assert r.status_code == 404
    assert r.json()["code"] == "device_not_found"
    assert "0 和字母 O" in r.json()["detail"]
    assert "DC2026OOO1" in r.json()["detail"]

    r = await client.post(
        "/api/v1/devices/bind", json={"serial": "DC-2026-0001", "secret": "000000"}, headers=me
    )
    assert r.status_code == 422
    assert r.json()["code"] == "device_secret_wrong"


async def test_device_bound_to_someone_else_is_a_409_and_unbind_frees_it(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _stock(rt)
    alice = await register_and_login(client)
    bob = await register_and_login(client)
    body = {"serial": "DC-2026-0001", "secret": "482193"}
    line_id = (await client.post("/api/v1/devices/bind", json=body, headers=alice)).json()["id"]

    r = await client.post("/api/v1/devices/bind", json=body, headers=bob)
    assert r.status_code == 409
    assert r.json()["code"] == "device_bound_elsewhere"

    # Only the owner may unbind; to anyone else the line does not exist.
    assert (await client.delete(f"/api/v1/devices/{line_id}", headers=bob)).status_code == 404
    assert (await client.delete(f"/api/v1/devices/{line_id}", headers=alice)).status_code == 204
    assert (await client.get("/api/v1/me/lines", headers=alice)).json() == []

    r = await client.post("/api/v1/devices/bind", json=body, headers=bob)
    assert r.status_code == 200


async def test_an_active_line_keeps_its_state_and_plan_through_bind_and_unbind(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _stock(rt)
    plan = await make_plan(rt)
    async with unit_of_work(rt.sessions) as session:
        line = await session.scalar(select(Line).where(Line.device_serial == "DC20260001"))
        assert line is not None
        line.plan_id = plan.id
        await transition(session, line, LineState.active, "sold in shop")
    me = await register_and_login(client)
    r = await client.post(
        "/api/v1/devices/bind?lang=en", json={"serial": "DC-2026-0001", "secret": "482193"},
        headers=me,
    )
    assert r.json()["state"] == "active"
    assert r.json()["plan"]["code"] == "DATA10"
    assert r.json()["plan"]["name"] == "10 GB monthly"
    await client.delete(f"/api/v1/devices/{r.json()['id']}", headers=me)
    async with unit_of_work(rt.sessions) as session:
        line = await session.scalar(select(Line).where(Line.device_serial == "DC20260001"))
    assert line is not None
    assert (line.state, line.plan_id, line.account_id) == (LineState.active, plan.id, None)


async def test_guessing_is_locked_out_per_account_until_the_window_passes(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await _stock(rt)
    me = await register_and_login(client)
    limit = rt.settings.bind_max_failures
    for i in range(limit):
        r = await client.post(
            "/api/v1/devices/bind", json={"serial": f"DC-2026-900{i}", "secret": "1234"},
            headers=me,
        )
        assert r.status_code == 404
        frozen.advance(seconds=30)

    right = {"serial": "DC-2026-0001", "secret": "482193"}
    r = await client.post("/api/v1/devices/bind", json=right, headers=me)
    assert r.status_code == 429
    assert r.json()["code"] == "bind_locked"
    # The oldest failure leaves the window 15 min after it happened.
    expected = rt.settings.bind_window_minutes * 60 - limit * 30
    assert r.headers["Retry-After"] == str(expected)

    other = await register_and_login(client)  # the lock is per account
    r = await client.post(
        "/api/v1/devices/bind",
        json={"serial": "SIM-0002", "secret": iccid(2)[-6:]},
        headers=other,
    )
    assert r.status_code == 200

    frozen.advance(seconds=expected)
    r = await client.post(
        "/api/v1/auth/token", json={"login": me["X-Phone"], "password": "Harbour-Lights-2026"}
    )
    me = {"Authorization": f"Bearer {r.json()['access_token']}"}  # the old token expired
    r = await client.post("/api/v1/devices/bind", json=right, headers=me)
    assert r.status_code == 200, r.text


async def test_lines_need_login_and_are_private(client: httpx.AsyncClient, rt: Runtime) -> None:
    await _stock(rt)
    assert (await client.get("/api/v1/me/lines")).status_code == 401
    r = await client.post("/api/v1/devices/bind", json={"serial": "DC-2026-0001", "secret": "1"})
    assert r.status_code == 401
    alice = await register_and_login(client)
    bob = await register_and_login(client)
    r = await client.post(
        "/api/v1/devices/bind", json={"serial": "DC-2026-0001", "secret": "482193"}, headers=alice
    )
    line_id = r.json()["id"]
    assert (await client.get(f"/api/v1/lines/{line_id}", headers=alice)).status_code == 200
    r = await client.get(f"/api/v1/lines/{line_id}", headers=bob)
    assert r.status_code == 404
    assert r.json()["code"] == "line_not_found"
    assert (await client.get(f"/api/v1/lines/{line_id}")).status_code == 401
