"""eSIM activation code and QR, for the owner only."""

from __future__ import annotations

import httpx

from openmvno.db import unit_of_work
from openmvno.lines import service as lines
from openmvno.lines.models import LineKind
from openmvno.runtime import Runtime
from tests.conftest import register_and_login
from tests.lines.helpers import account_id, iccid, load


async def _my_esim(client: httpx.AsyncClient, rt: Runtime, headers: dict[str, str]) -> str:
    async with unit_of_work(rt.sessions) as session:
        line = await lines.claim_inventory(
            session, account_id=await account_id(client, headers), kind=LineKind.esim
        )
    return str(line.id)


async def test_owner_gets_activation_code_qr_and_steps(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await load(rt, [f"esim,{iccid(1)},17000000001,,MATCH-0001,"])
    me = await register_and_login(client)
    line_id = await _my_esim(client, rt, me)

    r = await client.get("/api/v1/me/lines", headers=me)
    assert r.json()[0]["esim_url"] == f"http://testserver/api/v1/lines/{line_id}/esim"

    r = await client.get(f"/api/v1/lines/{line_id}/esim?lang=zh-CN", headers=me)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["activation_code"] == f"LPA:1${rt.settings.smdp_address}$MATCH-0001"
    assert body["install_steps"][0] == "将手机连接到 Wi-Fi。"

    png = await client.get(body["qr_png_url"], headers=me)
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    svg = await client.get(body["qr_svg_url"], headers=me)
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.lstrip().startswith("<svg")


async def test_nobody_else_learns_that_the_esim_exists(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await load(rt, [f"esim,{iccid(1)},17000000001,,MATCH-0001,"])
    me = await register_and_login(client)
    other = await register_and_login(client)
    line_id = await _my_esim(client, rt, me)
    for suffix in ("esim", "esim.png", "esim.svg"):
        r = await client.get(f"/api/v1/lines/{line_id}/{suffix}", headers=other)
        assert r.status_code == 404, suffix
        assert r.json()["code"] == "line_not_found"
        assert (await client.get(f"/api/v1/lines/{line_id}/{suffix}")).status_code == 401
    missing = "00000000-0000-0000-0000-000000000000"
    r = await client.get(f"/api/v1/lines/{missing}/esim", headers=other)
    assert r.json()["code"] == "line_not_found"


async def test_a_data_card_has_no_esim(client: httpx.AsyncClient, rt: Runtime) -> None:
    await load(rt, [f"datacard,{iccid(2)},17000000002,DC-0001,,1234"])
    me = await register_and_login(client)
    r = await client.post("/api/v1/devices/bind", json={"serial": "dc 0001", "secret": "1234"}, headers=me)
    assert r.status_code == 200, r.text
    assert r.json()["esim_url"] is None
    r = await client.get(f"/api/v1/lines/{r.json()['id']}/esim", headers=me)
    assert r.status_code == 404
    assert r.json()["code"] == "not_an_esim"
