"""``db.execute_alone``: one writing statement as its own transaction — committed when it
returns, its matched rows counted — and the pooled connection it ran on goes back to
ordinary units of work, which still roll back what they did before a failure."""

from __future__ import annotations

from sqlalchemy import select, update

from openmvno.db import execute_alone, unit_of_work
from openmvno.lines.models import Line
from openmvno.runtime import Runtime
from tests.ledger.helpers import make_account, make_line


class _Boom(Exception):
    pass


async def test_a_statement_alone_is_committed_and_the_next_unit_of_work_still_rolls_back(
    rt: Runtime,
) -> None:
    async with unit_of_work(rt.sessions) as session:
        owner = await make_account(session, "Alone")
        line = await make_line(session, owner)
        other = await make_line(session, owner)
    renamed = update(Line).where(Line.id == line.id).values(msisdn="+8613900000001")
    assert await execute_alone(rt.sessions, renamed) == 1
    nobody = update(Line).where(Line.msisdn == "+8613999999999").values(auto_renew=True)
    assert await execute_alone(rt.sessions, nobody) == 0
    async with unit_of_work(rt.sessions, readonly=True) as session:  # another connection
        assert await session.scalar(select(Line.msisdn).where(Line.id == line.id)) == (
            "+8613900000001")

    # The writers' pool after it: a failing unit of work leaves nothing behind.
    try:
        async with unit_of_work(rt.sessions) as session:
            await session.execute(update(Line).where(Line.id == other.id)
                                  .values(msisdn="+8613900000002"))
            raise _Boom
    except _Boom:
        pass
    async with unit_of_work(rt.sessions, readonly=True) as session:
        assert await session.scalar(select(Line.msisdn).where(Line.id == other.id)) == (
            other.msisdn)
