"""A retired plan is not sold any more, but lines on it keep it."""

from __future__ import annotations

import httpx
import pytest

from openmvno.accounts.models import Role
from openmvno.catalog import service as catalog
from openmvno.db import unit_of_work
from openmvno.errors import Conflict
from openmvno.lines import service as lines
from openmvno.lines.models import LineKind, LineState
from openmvno.lines.states import transition
from openmvno.runtime import Runtime
from tests.catalog.helpers import make_plan, staff_headers
from tests.conftest import register_and_login
from tests.lines.helpers import account_id, iccid, load


async def test_retired_plan_leaves_the_shop_but_stays_on_the_line(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    plan = await make_plan(rt)
    await load(rt, [f"esim,{iccid(1)},17000000001,,MATCH-0001,"])
    me = await register_and_login(client)
    owner = await account_id(client, me)
    async with unit_of_work(rt.sessions) as session:
        line = await lines.claim_inventory(session, account_id=owner, kind=LineKind.esim)
        line.plan_id = plan.id
        await transition(session, line, LineState.active, "bought DATA10")

    admin = await staff_headers(client, rt, Role.admin)
    assert (await client.post("/api/v1/admin/plans/DATA10/retire", headers=admin)).status_code == 200

    assert "DATA10" not in [p["code"] for p in (await client.get("/api/v1/plans")).json()]
    mine = (await client.get("/api/v1/me/lines?lang=en", headers=me)).json()
    assert mine[0]["state"] == "active"
    assert mine[0]["plan"] == {
        "code": "DATA10", "name": "10 GB monthly", "name_zh": "10GB 月包",
        "name_en": "10 GB monthly", "on_sale": False,
    }
    async with unit_of_work(rt.sessions) as session:
        assert [v.plan_code for v in await lines.list_for_account(session, owner)] == ["DATA10"]
        assert await catalog.list_plans(session) == []
        assert len(await catalog.list_plans(session, include_retired=True)) == 1
        with pytest.raises(Conflict):
            await catalog.get_sellable_plan(session, "DATA10")
