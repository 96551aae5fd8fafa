"""Plans (admin API, YAML import) and stock (CSV import) refuse what a database cannot store:
integers beyond BIGINT, NUL and control characters, text longer than its column. Each of
these was a 500 (or a traceback from the CLI) before the edge types."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import func, select

from openmvno.accounts.models import Role
from openmvno.catalog import service as catalog
from openmvno.catalog.imports import ImportRejected
from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.lines.importer import import_lines
from openmvno.lines.models import Line
from openmvno.runtime import Runtime
from tests.catalog.helpers import DATA_10GB, make_plan, staff_headers


async def _plans(rt: Runtime) -> int:
    async with unit_of_work(rt.sessions) as session:
        return int(await session.scalar(select(func.count()).select_from(Plan)) or 0)


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("price_minor", str(2**63)),
        ("price_minor", str(2**64)),
        ("price_minor", "1e400"),
        ("price_minor", "1.5"),
        ("price_minor", '"3000"'),
        ("data_bytes", str(2**63)),
        ("voice_seconds", "Infinity"),
        ("sms_count", "-1"),
        ("validity_days", "NaN"),
    ],
)
async def test_admin_plan_integers_outside_their_range_are_a_422(
    client: httpx.AsyncClient, rt: Runtime, field: str, raw: str
) -> None:
    admin = await staff_headers(client, rt, Role.admin)
    body = {k: v for k, v in DATA_10GB.items() if k != "data_gb"} | {"data_bytes": 1024}
    text = json.dumps(body | {field: "@@"}).replace('"@@"', raw)
    r = await client.post(
        "/api/v1/admin/plans", content=text,
        headers={**admin, "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "validation_failed"
    assert field in r.json()["detail"]
    assert await _plans(rt) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name_en", "Nu\u0000ll"),
        ("name_zh", "\u202e包月"),
        ("name_en", "\u200b\u200b"),
        ("name_en", "x" * 101),
        ("terms_en", "ok\u0007"),
        ("terms_zh", "条" * 4001),
        ("code", "a\u0000b"),
        ("currency", "C\u0000Y"),
    ],
)
async def test_admin_plan_text_that_cannot_be_stored_or_shown_is_a_422(
    client: httpx.AsyncClient, rt: Runtime, field: str, value: str
) -> None:
    admin = await staff_headers(client, rt, Role.admin)
    r = await client.post("/api/v1/admin/plans", json=DATA_10GB | {field: value}, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field
    assert await _plans(rt) == 0


async def test_terms_keep_their_line_breaks_and_names_are_normalised(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    admin = await staff_headers(client, rt, Role.admin)
    body = DATA_10GB | {"name_en": "  Cafe\u0301 10 GB ", "terms_en": "Line one\r\nLine two"}
    r = await client.post("/api/v1/admin/plans", json=body, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["name_en"] == "Café 10 GB"  # NFC: one é, spaces trimmed
    r = await client.get("/api/v1/plans/DATA10?lang=en")
    assert r.json()["terms"] == "Line one\nLine two"


async def test_a_plan_patch_with_a_nul_changes_nothing(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await make_plan(rt)
    admin = await staff_headers(client, rt, Role.admin)
    for body in ({"name_en": "a\u0000b"}, {"reason": "x\u0000"}, {"price_minor": 2**63}):
        r = await client.patch("/api/v1/admin/plans/DATA10", json=body, headers=admin)
        assert r.status_code == 422, r.text
    assert (await client.get("/api/v1/plans/DATA10?lang=en")).json()["name_en"] == (
        "10 GB monthly"
    )
    for path in ("/api/v1/plans/a%00b", "/api/v1/admin/plans/a%00b/retire"):
        r = await client.request(
            "GET" if "retire" not in path else "POST", path, headers=admin
        )
        assert r.status_code == 422, r.text


async def test_yaml_import_reports_rows_with_huge_numbers_and_control_characters(
    rt: Runtime,
) -> None:
    rows = [
        DATA_10GB | {"code": "OK1"},
        DATA_10GB | {"code": "BIG", "price_minor": 2**63},
        DATA_10GB | {"code": "INF", "price_minor": float("inf")},
        DATA_10GB | {"code": "NUL", "name_en": "bad\u0000name"},
        DATA_10GB | {"code": "HUGE", "data_gb": 2**40},
    ]
    async with unit_of_work(rt.sessions) as session:
        with pytest.raises(ImportRejected) as caught:
            await catalog.import_plans(session, rows, default_currency="CNY")
    found = {e.row: e.message for e in caught.value.errors}
    assert sorted(found) == [2, 3, 4, 5]
    assert "price_minor" in found[2] and "price_minor" in found[3]
    assert "name_en" in found[4] and "control character" in found[4]
    assert "data_bytes" in found[5]
    assert await _plans(rt) == 0


async def test_csv_import_refuses_cells_that_are_too_long_or_hold_control_characters(
    rt: Runtime,
) -> None:
    header = "kind,iccid,msisdn,device_serial,esim_matching_id,pin\n"
    text = (
        header
        + "esim,89860000000000000005,+8617000000001,,MATCH-0001,\n"
        + "sim,8986000000000000001" + "9" * 5000 + ",+8617000000002,SN0002,,\n"
        + "sim,89860000000000000013,+8617000000003,SN\x000003,,\n"
    )
    async with unit_of_work(rt.sessions) as session:
        with pytest.raises(ImportRejected) as caught:
            await import_lines(session, rt, text)
    messages = {e.row: e.message for e in caught.value.errors}
    assert set(messages) >= {3, 4}
    assert "iccid must be at most 64 characters" in messages[3]
    assert len(messages[3]) < 200  # the 5,000-digit cell is not echoed back
    assert "device_serial" in messages[4]
    async with unit_of_work(rt.sessions) as session:
        assert await session.scalar(select(func.count()).select_from(Line)) == 0


@pytest.mark.parametrize("field", ["name_zh", "price_minor", "validity_days", "roaming_zones",
                                   "overage_rule", "terms_en"])
async def test_a_plan_patch_with_null_is_a_422_not_a_500(
    client: httpx.AsyncClient, rt: Runtime, field: str
) -> None:
    """Found by the API fuzz: ``null`` reached NOT NULL columns."""
    await make_plan(rt)
    admin = await staff_headers(client, rt, Role.admin)
    r = await client.patch("/api/v1/admin/plans/DATA10", json={field: None}, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0] == {
        "field": field, "type": "null_value", "message": "Leave the field out to keep its value",
    }
    plan = (await client.get("/api/v1/plans/DATA10?lang=en")).json()
    assert plan["name_zh"] == "10GB 月包" and plan["price"]["minor"] == 3000
