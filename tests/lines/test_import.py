"""Importing SIM / eSIM / data-card stock from CSV: checked row by row, all or nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from openmvno.catalog.imports import ImportRejected
from openmvno.db import unit_of_work
from openmvno.lines.identifiers import luhn_ok, valid_iccid
from openmvno.lines.importer import import_lines
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.lines.service import bind_secret_hash
from openmvno.runtime import Runtime
from tests.lines.helpers import HEADER, iccid, load


def test_luhn_catches_a_mistyped_digit() -> None:
    good = iccid(42)
    assert luhn_ok(good) and valid_iccid(good) == good
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert valid_iccid(bad) is None
    assert valid_iccid(good[:10]) is None
    assert valid_iccid("８９８６ " + good[4:]) == good  # full-width digits and spaces are fine


async def test_import_stores_every_kind_as_inventory_and_hashes_the_secret(rt: Runtime) -> None:
    await load(rt, [
        f"esim,{iccid(1)},17000000001,,MATCH-0001,",
        f"sim,{iccid(2)},+86 170 0000 0002,sim-0002,,",
        f"datacard,{iccid(3)},170-0000-0003,DC-2026-0003,,4821",
    ])
    async with unit_of_work(rt.sessions) as session:
        lines = {ln.kind: ln for ln in await session.scalars(select(Line))}
    assert set(lines) == set(LineKind)
    assert all(ln.state == LineState.inventory and ln.account_id is None for ln in lines.values())
    assert lines[LineKind.sim].msisdn == "+8617000000002"
    assert lines[LineKind.datacard].device_serial == "DC20260003"
    assert lines[LineKind.esim].bind_secret_hash is None
    # No PIN: the last 6 ICCID digits. With a PIN: the PIN. Never the plain secret.
    assert lines[LineKind.sim].bind_secret_hash == bind_secret_hash(rt, iccid(2)[-6:])
    assert lines[LineKind.datacard].bind_secret_hash == bind_secret_hash(rt, "4821")
    assert "4821" not in (lines[LineKind.datacard].bind_secret_hash or "")


async def test_one_bad_row_imports_nothing_and_every_problem_is_reported(rt: Runtime) -> None:
    await load(rt, [f"sim,{iccid(9)},17000000009,SIM0009,,"])
    bad_luhn = iccid(5)[:-1] + str((int(iccid(5)[-1]) + 1) % 10)
    text = HEADER + "\n".join([
        f"esim,{iccid(4)},17000000004,,MATCH-0004,",        # line 2: fine
        f"sim,{bad_luhn},17000000005,SIM0005,,",            # line 3: Luhn
        f"phone,{iccid(6)},17000000006,SIM0006,,",          # line 4: kind
        f"sim,{iccid(7)},12345,SIM0007,,",                  # line 5: msisdn
        f"datacard,{iccid(8)},17000000008,,,",              # line 6: no serial
        f"sim,{iccid(4)},17000000010,SIM0010,,",            # line 7: ICCID repeats line 2
        f"sim,{iccid(9)},17000000011,SIM0011,,",            # line 8: ICCID already in DB
        f"sim,{iccid(12)},17000000012,sim 0009,,",          # line 9: serial already in DB
    ]) + "\n"
    async with unit_of_work(rt.sessions) as session:
        with pytest.raises(ImportRejected) as caught:
            await import_lines(session, rt, text)
    by_line = {e.row: e.message for e in caught.value.errors}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9]
    assert "Luhn" in by_line[3]
    assert "kind" in by_line[4]
    assert "MSISDN" in by_line[5]
    assert "device_serial" in by_line[6]
    assert "repeats line 2" in by_line[7]
    assert "already in the database" in by_line[8]
    assert "SIM0009 is already in the database" in by_line[9]
    async with unit_of_work(rt.sessions) as session:
        assert await session.scalar(select(func.count()).select_from(Line)) == 1


async def test_missing_columns_are_reported(rt: Runtime) -> None:
    async with unit_of_work(rt.sessions) as session:
        with pytest.raises(ImportRejected) as caught:
            await import_lines(session, rt, "kind,iccid\nsim,1\n")
    assert "msisdn" in str(caught.value.errors[0])
