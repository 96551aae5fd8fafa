"""The line state machine, in one place.

::

    inventory ──► active ──► grace ──► suspended ──► terminated
        │           ▲          │           │
        │           └──────────┴───────────┘   (a payment that renews the plan: 复机)
        └──────────────────────────────────────► terminated (scrapped stock)

``active → grace`` at expiry with nothing renewed, ``grace → suspended`` (停机) after
``grace_days``, ``suspended → terminated`` after ``suspension_days`` more: the
scheduled moves of :mod:`openmvno.lines.lifecycle`. A grace line is never terminated
directly, and a terminated line never comes back (its number goes into quarantine).

Binding a device or assigning an eSIM does not change the state: a bound inventory
line stays ``inventory`` until a plan is bought (orders move it to ``active``).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.errors import Conflict
from openmvno.lines.models import Line, LineEvent, LineState

S = LineState
TRANSITIONS: dict[LineState, frozenset[LineState]] = {
    S.inventory: frozenset({S.active, S.terminated}),
    S.active: frozenset({S.grace}),
    S.grace: frozenset({S.active, S.suspended}),
    S.suspended: frozenset({S.active, S.terminated}),
    S.terminated: frozenset(),
}
"""Legal moves: ``TRANSITIONS[from]`` is the set of states a line may go to next."""


def can_transition(from_state: LineState, to_state: LineState) -> bool:
    return to_state in TRANSITIONS[from_state]


async def transition(
    session: AsyncSession, line: Line, to_state: LineState, reason: str
) -> LineEvent:
    """Move ``line`` to ``to_state`` and log it; an illegal move is a 409."""
    from_state = LineState(line.state)
    if not can_transition(from_state, to_state):
        raise Conflict(
            "illegal_line_transition",
            "A line cannot go from {from_state} to {to_state}.",
            from_state=from_state.value,
            to_state=to_state.value,
        )
    now = clock.now()
    line.state = to_state
    line.state_changed_at = now
    if to_state is S.active and line.activated_at is None:
        line.activated_at = now
    event = LineEvent(
        line_id=line.id,
        account_id=line.account_id,
        event="state",
        from_state=from_state.value,
        to_state=to_state.value,
        reason=reason[:200],
        at=now,
    )
    session.add(event)
    await session.flush()
    return event


def service_level(line: Line, grace_service: str = "minimal") -> str:
    """What the network lets the line do: ``full`` (active, not expired), ``minimal``
    (grace with ``grace_service=minimal``: incoming calls and SMS, emergency calls,
    nothing charged) or ``none``."""
    if may_use_service(line):
        return "full"
    if line.state == S.grace and grace_service == "minimal":
        return "minimal"
    return "none"


def may_use_service(line: Line) -> bool:
    """Entitlement: only an ``active`` line that has not passed its expiry may use service."""
    if line.state != S.active:
        return False
    return line.expires_at is None or line.expires_at > clock.now()
