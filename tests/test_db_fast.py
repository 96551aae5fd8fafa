"""Hot reads on the driver (``openmvno.db_fast``) answer exactly what SQLAlchemy's own
execution answers: the same rows, the same Python values (UUIDs, aware datetimes, enums,
booleans, NULLs), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from openmvno.db import read_connection, unit_of_work
from openmvno.db_fast import FastSelect
from openmvno.lines.models import Line
from openmvno.runtime import Runtime
from tests.ledger.helpers import make_account, make_line, make_plan

_LINES = select(
    Line.id, Line.msisdn, Line.state, Line.expires_at, Line.auto_renew, Line.plan_id
).order_by(Line.msisdn)


async def test_a_fast_select_reads_what_sqlalchemy_reads(rt: Runtime) -> None:
    async with unit_of_work(rt.sessions) as session:
        owner = await make_account(session, "Fast Reader")
        plan = await make_plan(session, "FAST-30")
        await make_line(session, owner, plan=plan, expires_at=datetime(2027, 1, 2, 3, 4, tzinfo=UTC))
        await make_line(session, owner)  # no plan, no expiry: NULLs come back as None
    fast = FastSelect(_LINES)
    async with unit_of_work(rt.sessions, readonly=True) as session:
        driver_rows = await fast.all(session, {})
        again = await fast.all(session, {})  # the connection looked up once, used twice
    async with unit_of_work(rt.sessions, readonly=True) as session:
        orm_rows = (await session.execute(_LINES)).all()
    async with read_connection(rt.sessions) as conn:  # no session: the hottest reads
        bare_rows = await fast.all(conn, {})
    assert [tuple(r) for r in driver_rows] == [tuple(r) for r in orm_rows] == [tuple(r) for r in again]
    assert [tuple(r) for r in bare_rows] == [tuple(r) for r in orm_rows]
    assert len(driver_rows) == 2
    dated = next(r for r in driver_rows if r.expires_at is not None)
    assert dated.expires_at == datetime(2027, 1, 2, 3, 4, tzinfo=UTC)
    assert dated.expires_at.tzinfo is not None
    assert type(dated.id) is type(orm_rows[0].id)
    assert {r.plan_id for r in driver_rows} == {plan.id, None}
    assert all(isinstance(r.auto_renew, bool) for r in driver_rows)


async def test_a_read_connection_cannot_write(rt: Runtime) -> None:
    async with unit_of_work(rt.sessions) as session:
        await make_account(session, "Only Read")
    with pytest.raises(DBAPIError):
        async with read_connection(rt.sessions) as conn:
            await conn.execute(text("UPDATE accounts SET name = 'changed'"))
    async with unit_of_work(rt.sessions, readonly=True) as session:
        names = (await session.execute(text("SELECT name FROM accounts"))).scalars().all()
    assert names == ["Only Read"]
