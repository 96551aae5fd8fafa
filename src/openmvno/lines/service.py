"""Lines for subscribers: list mine, look one up, bind and unbind devices, claim stock."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts.models import Account
from openmvno.catalog.models import Plan
from openmvno.errors import Conflict, InvalidInput, NotFound, TooManyAttempts
from openmvno.lines.identifiers import normalize_token
from openmvno.lines.models import BindAttempt, Line, LineEvent, LineKind, LineState
from openmvno.lines.states import may_use_service
from openmvno.runtime import Runtime
from openmvno.security import keyed_digest, same


@dataclass(frozen=True, slots=True)
class LineView:
    """One line as the "My account" page shows it."""

    id: uuid.UUID
    kind: LineKind
    msisdn: str
    iccid: str
    state: LineState
    may_use_service: bool
    plan_code: str | None
    plan_name_zh: str | None
    plan_name_en: str | None
    plan_active: bool | None
    expires_at: datetime | None
    auto_renew: bool
    device_serial: str | None
    bound_at: datetime | None
    activated_at: datetime | None
    has_esim_profile: bool

    def plan_name(self, language: str) -> str | None:
        return self.plan_name_zh if language == "zh-CN" else self.plan_name_en


def _view(line: Line, plan: Plan | None) -> LineView:
    return LineView(
        id=line.id,
        kind=LineKind(line.kind),
        msisdn=line.msisdn,
        iccid=line.iccid,
        state=LineState(line.state),
        may_use_service=may_use_service(line),
        plan_code=plan.code if plan else None,
        plan_name_zh=plan.name_zh if plan else None,
        plan_name_en=plan.name_en if plan else None,
        plan_active=plan.active if plan else None,
        expires_at=line.expires_at,
        auto_renew=line.auto_renew,
        device_serial=line.device_serial,
        bound_at=line.bound_at,
        activated_at=line.activated_at,
        has_esim_profile=line.kind == LineKind.esim and bool(line.esim_matching_id),
    )


async def list_for_account(session: AsyncSession, account_id: uuid.UUID) -> list[LineView]:
    """The account's lines (terminated ones last), each with its plan names."""
    rows = await session.execute(
        select(Line, Plan)
        .outerjoin(Plan, Plan.id == Line.plan_id)
        .where(Line.account_id == account_id)
        .order_by((Line.state == LineState.terminated), Line.created_at, Line.msisdn)
    )
    return [_view(line, plan) for line, plan in rows.all()]


async def view(session: AsyncSession, line: Line) -> LineView:
    plan = await session.get(Plan, line.plan_id) if line.plan_id else None
    return _view(line, plan)


async def get_owned(session: AsyncSession, *, account_id: uuid.UUID, line_id: uuid.UUID) -> Line:
    """A line of this account; anyone else's line is "not found" (existence never leaks)."""
    line = await session.scalar(
        select(Line).where(Line.id == line_id, Line.account_id == account_id)
    )
    if line is None:
        raise NotFound("line_not_found", "There is no such line on your account.")
    return line


def bind_secret_hash(rt: Runtime, secret: str) -> str:
    """What is stored for a device's bind secret (PIN, or last 6 ICCID digits)."""
    return keyed_digest(rt.secret_key, normalize_token(secret))


async def _check_attempts(session: AsyncSession, rt: Runtime, account_id: uuid.UUID) -> None:
    window = timedelta(minutes=rt.settings.bind_window_minutes)
    limit = rt.settings.bind_max_failures
    now = clock.now()
    recent = list(
        await session.scalars(
            select(BindAttempt.at)
            .where(BindAttempt.account_id == account_id, BindAttempt.at > now - window)
            .order_by(BindAttempt.at)
        )
    )
    if len(recent) >= limit:
        frees_at = recent[len(recent) - limit] + window
        wait = max(1, math.ceil((frees_at - now).total_seconds()))
        raise TooManyAttempts(
            "bind_locked",
            "Too many wrong attempts to bind a device. Try again in {minutes} minutes.",
            retry_after=wait,
            minutes=math.ceil(wait / 60),
        )


async def _fail(session: AsyncSession, account_id: uuid.UUID, serial: str) -> None:
    session.add(BindAttempt(account_id=account_id, serial=serial[:40], at=clock.now()))
    await session.flush()


async def bind_device(
    session: AsyncSession, rt: Runtime, *, account: Account, serial: str, secret: str
) -> Line:
    """Tie a SIM or data card to ``account`` by its printed serial and secret.

    Both are normalised (full-width → ASCII, spaces and dashes dropped, upper case).
    Failures are counted per account; after ``bind_max_failures`` within
    ``bind_window_minutes`` further tries get :class:`TooManyAttempts`. The line keeps its
    state: a bound ``inventory`` line waits for a plan; an ``active`` one stays active.
    Binding your own device again is a no-op."""
    key = normalize_token(serial)
    if not key:
        raise InvalidInput("serial_required", "Enter the serial number printed on the device.")
    if not normalize_token(secret):
        raise InvalidInput("secret_required", "Enter the PIN printed with the serial number.")
    await _check_attempts(session, rt, account.id)
    line = await session.scalar(
        select(Line).where(Line.device_serial == key).with_for_update()
    )
    if line is None:
        await _fail(session, account.id, key)
        raise NotFound(
            "device_not_found",
            "No device has the serial {serial}. Check the label: 0 and O, 1 and I, "
            "8 and B look alike.",
            keep_changes=True,
            serial=key,
        )
    if not line.bind_secret_hash or not same(line.bind_secret_hash, bind_secret_hash(rt, secret)):
        await _fail(session, account.id, key)
        raise InvalidInput(
            "device_secret_wrong",
            "The PIN does not match this serial. Use the PIN printed with it (or, if there is "
            "none, the last 6 digits of the SIM number, ICCID).",
            keep_changes=True,
        )
    if line.account_id == account.id:
        return line
    if line.account_id is not None:
        raise Conflict(
            "device_bound_elsewhere",
            "This device is already bound to another account. Ask its owner to unbind it, "
            "or call customer service.",
        )
    if line.state == LineState.terminated:
        raise Conflict("line_terminated", "This line has been closed and cannot be bound.")
    now = clock.now()
    line.account_id = account.id
    line.bound_at = now
    session.add(
        LineEvent(
            line_id=line.id, account_id=account.id, event="bound", from_state=line.state,
            to_state=line.state, reason="device bound by subscriber", at=now,
        )
    )
    await session.flush()
    return line


async def unbind_device(session: AsyncSession, *, account: Account, line_id: uuid.UUID) -> None:
    """Release a device from its owner's account. The line keeps its state, plan and expiry;
    auto-renew is switched off since nobody pays for it any more."""
    line = await get_owned(session, account_id=account.id, line_id=line_id)
    if line.device_serial is None:
        raise Conflict("not_a_device", "This line has no device to unbind.")
    now = clock.now()
    line.account_id = None
    line.bound_at = None
    line.auto_renew = False
    session.add(
        LineEvent(
            line_id=line.id, account_id=account.id, event="unbound", from_state=line.state,
            to_state=line.state, reason="device unbound by owner", at=now,
        )
    )
    await session.flush()


async def claim_inventory(
    session: AsyncSession, *, account_id: uuid.UUID, kind: LineKind = LineKind.esim
) -> Line:
    """Give the account a free stock line of ``kind`` (e.g. a new eSIM on purchase). The line
    stays ``inventory``; the caller activates it (``states.transition``) when the plan is paid."""
    line = await session.scalar(
        select(Line)
        .where(Line.kind == kind, Line.state == LineState.inventory, Line.account_id.is_(None))
        .order_by(Line.created_at, Line.msisdn)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if line is None:
        raise Conflict("out_of_stock", "No new lines are available right now; try again later.")
    now = clock.now()
    line.account_id = account_id
    line.bound_at = now
    session.add(
        LineEvent(
            line_id=line.id, account_id=account_id, event="assigned", from_state=line.state,
            to_state=line.state, reason="assigned from stock", at=now,
        )
    )
    await session.flush()
    return line


async def count_by_state(session: AsyncSession) -> dict[LineState, int]:
    """How many lines are in each state (admin overview)."""
    rows = await session.execute(select(Line.state, func.count()).group_by(Line.state))
    return {LineState(s): n for s, n in rows.all()}
