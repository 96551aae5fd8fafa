"""The line state machine: every legal move works and logs; every other move is a 409."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select

from openmvno import clock
from openmvno.db import unit_of_work
from openmvno.errors import Conflict
from openmvno.lines.models import Line, LineEvent, LineState
from openmvno.lines.states import may_use_service, transition
from openmvno.runtime import Runtime
from tests.lines.helpers import iccid, load

S = LineState
LEGAL = {
    (S.inventory, S.active),
    (S.inventory, S.terminated),
    (S.active, S.grace),
    (S.grace, S.active),
    (S.grace, S.suspended),
    (S.suspended, S.active),
    (S.suspended, S.terminated),
}
ALL = list(itertools.product(LineState, LineState))


async def _line_in(rt: Runtime, state: LineState) -> None:
    await load(rt, [f"sim,{iccid(1)},+8617000000001,SIM0001,,"])
    async with unit_of_work(rt.sessions) as session:
        line = await session.scalar(select(Line))
        assert line is not None
        line.state = state


@pytest.mark.parametrize(("from_state", "to_state"), sorted(LEGAL))
async def test_legal_transition_moves_the_line_and_logs_it(
    rt: Runtime, from_state: LineState, to_state: LineState
) -> None:
    await _line_in(rt, from_state)
    async with unit_of_work(rt.sessions) as session:
        line = await session.scalar(select(Line))
        assert line is not None
        await transition(session, line, to_state, "test")
    async with unit_of_work(rt.sessions) as session:
        line = await session.scalar(select(Line))
        event = await session.scalar(select(LineEvent))
    assert line is not None and line.state == to_state
    assert event is not None
    assert (event.from_state, event.to_state, event.reason) == (from_state, to_state, "test")
    if to_state is S.active:
        assert line.activated_at is not None


@pytest.mark.parametrize(("from_state", "to_state"), [p for p in ALL if p not in LEGAL])
async def test_illegal_transition_is_a_conflict_and_changes_nothing(
    rt: Runtime, from_state: LineState, to_state: LineState
) -> None:
    await _line_in(rt, from_state)
    async with unit_of_work(rt.sessions) as session:
        line = await session.scalar(select(Line))
        assert line is not None
        with pytest.raises(Conflict) as caught:
            await transition(session, line, to_state, "test")
        assert caught.value.code == "illegal_line_transition"
        assert line.state == from_state
        assert await session.scalar(select(LineEvent)) is None


@pytest.mark.parametrize("state", list(LineState))
def test_only_an_active_unexpired_line_may_use_service(state: LineState) -> None:
    line = Line(state=state, expires_at=clock.now() + timedelta(days=1))
    assert may_use_service(line) is (state is S.active)
    line.expires_at = clock.now() - timedelta(seconds=1)
    assert may_use_service(line) is False
