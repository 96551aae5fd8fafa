"""Operator commands run against the test database, all or nothing, errors per row."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from openmvno.catalog.models import Plan
from openmvno.cli import app
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.lines.models import Line
from openmvno.runtime import Runtime
from tests.lines.helpers import HEADER, iccid

Invoke = Callable[..., Awaitable[Result]]


@pytest.fixture(name="invoke")
def cli(settings: Settings, tmp_path: Path) -> Invoke:
    env = {
        "OPENMVNO_ENVIRONMENT": "development",  # like the ``settings`` fixture
        "OPENMVNO_DATABASE_URL": settings.database_url,
        "OPENMVNO_DATA_DIR": str(tmp_path),
        "OPENMVNO_SECRET_KEY": settings.secret_key.get_secret_value(),
        "OPENMVNO_ARGON2_TIME_COST": "1",
        "OPENMVNO_ARGON2_MEMORY_COST": "1024",
        "OPENMVNO_ARGON2_PARALLELISM": "1",
    }

    async def invoke(*args: str) -> Result:
        # The commands call asyncio.run themselves, so they run off the test's loop.
        return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)

    return invoke


PLANS_YAML = """
plans:
  - code: DATA10
    kind: data
    name_zh: 10GB 月包
    name_en: 10 GB monthly
    price_minor: 3000
    data_gb: 10
  - code: TOPUP50
    kind: topup
    name_zh: 充值 50 元
    name_en: Top up 50
    price_minor: 5000
    validity_days: 0
"""


async def _count(rt: Runtime, model: type[Plan] | type[Line]) -> int:
    async with unit_of_work(rt.sessions) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_import_plans_upserts_and_rejects_bad_files_whole(
    invoke: Invoke, rt: Runtime, tmp_path: Path
) -> None:
    good = tmp_path / "plans.yaml"
    good.write_text(PLANS_YAML)
    r = await invoke("import", "plans", str(good))
    assert r.exit_code == 0, r.output
    assert "2 created" in r.output

    good.write_text(PLANS_YAML.replace("price_minor: 3000", "price_minor: 2800"))
    r = await invoke("import", "plans", str(good))
    assert "0 created, 1 updated, 1 unchanged" in r.output

    bad = tmp_path / "bad.yaml"
    bad.write_text(PLANS_YAML + """
  - code: NEW1
    kind: data
    name_zh: 新
    name_en: New
    price_minor: 12.5
    data_gb: 1
  - code: NEW2
    kind: voice
    name_zh: 新
    name_en: New
    price_minor: 100
""")
    r = await invoke("import", "plans", str(bad))
    assert r.exit_code == 1
    assert "row 3: price_minor" in r.output
    assert "row 4:" in r.output and "voice_seconds" in r.output
    assert "Nothing was imported" in r.output
    assert await _count(rt, Plan) == 2


async def test_import_lines_reports_line_numbers_and_adds_nothing_on_error(
    invoke: Invoke, rt: Runtime, tmp_path: Path
) -> None:
    bad_luhn = iccid(2)[:-1] + str((int(iccid(2)[-1]) + 1) % 10)
    csv = tmp_path / "lines.csv"
    csv.write_text(
        HEADER
        + f"datacard,{iccid(1)},17000000001,DC-0001,,123456\n"
        + f"sim,{bad_luhn},17000000002,SIM-0002,,\n"
    )
    r = await invoke("import", "lines", str(csv))
    assert r.exit_code == 1
    assert "row 3: ICCID" in r.output and "Luhn" in r.output
    assert await _count(rt, Line) == 0

    csv.write_text(HEADER + f"datacard,{iccid(1)},17000000001,DC-0001,,123456\n")
    r = await invoke("import", "lines", str(csv))
    assert r.exit_code == 0, r.output
    assert await _count(rt, Line) == 1

    r = await invoke("import", "lines", str(csv))
    assert r.exit_code == 1
    assert "already in the database" in r.output


async def test_staff_create_makes_a_working_admin(
    invoke: Invoke, client: httpx.AsyncClient
) -> None:
    args = ["staff", "create", "--role", "admin", "--name", "Wang Fang",
            "--email", "Wang@Example.org", "--password", "Admin-pass-2026"]
    r = await invoke(*args)
    assert r.exit_code == 0, r.output
    r2 = await client.post(
        "/api/v1/auth/token", json={"login": "wang@example.org", "password": "Admin-pass-2026"}
    )
    assert r2.status_code == 200
    r = await invoke(*args)
    assert r.exit_code == 1
    assert "already exists" in r.output
    r = await invoke("staff", "create", "--role", "subscriber", "--name", "X",
                     "--email", "x@example.org", "--password", "Admin-pass-2026")
    assert r.exit_code == 2


async def test_demo_command_loads_and_prints_logins(invoke: Invoke, rt: Runtime) -> None:
    r = await invoke("demo", "--port", "8080")
    assert r.exit_code == 0, r.output
    assert "http://127.0.0.1:8080/docs" in r.output
    assert "admin@demo.openmvno" in r.output
    r = await invoke("demo")
    assert r.exit_code == 0
    assert "nothing changed" in r.output
