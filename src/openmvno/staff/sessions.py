"""Console sessions for staff: the portal's password check (argon2, lockout per login and
per address) plus a staff-only role check, an optional TOTP second factor, a session that
ends after ``console_session_hours`` or ``console_idle_minutes`` without a request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import pyotp
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts import service as accounts
from openmvno.accounts.models import Account
from openmvno.audit import service as audit
from openmvno.audit.service import STAFF_ROLES
from openmvno.errors import InvalidInput, Unauthorized
from openmvno.runtime import Runtime
from openmvno.security import keyed_digest, new_token, sha256
from openmvno.staff.models import StaffSession, StaffTotp

IDLE_WRITE_SECONDS = 60
"""The idle deadline is pushed forward at most once a minute (not a write per request)."""


@dataclass
class Staff:
    """The staff member behind a console request."""

    account: Account
    session: StaffSession

    @property
    def csrf(self) -> str:
        return keyed_digest(self.session.csrf_secret, "console-csrf")

    @property
    def is_admin(self) -> bool:
        return self.account.role.value == "admin"


def _refused() -> Unauthorized:
    return Unauthorized(
        "login_failed", "The phone number, email or password is wrong.", keep_changes=True
    )


async def login(
    session: AsyncSession, rt: Runtime, *, login: str, password: str, client: str
) -> tuple[str, StaffSession, bool]:
    """Check the password (the accounts service: lockout, argon2); only agents and admins
    get a console session. Returns (raw cookie value, session, needs the second factor)."""
    account = await accounts.authenticate_password(
        session, rt, login=login, password=password, client=client
    )
    if account.role not in STAFF_ROLES:
        raise _refused()  # a subscriber's right password opens nothing here
    totp = await session.get(StaffTotp, account.id)
    needs_totp = totp is not None and totp.enabled_at is not None
    raw = new_token()
    now = clock.now()
    row = StaffSession(
        id=uuid.uuid4(),
        account_id=account.id,
        token_hash=sha256(raw),
        csrf_secret=new_token(),
        second_factor_done=not needs_totp,
        expires_at=now + timedelta(hours=rt.settings.console_session_hours),
        idle_until=now + timedelta(minutes=rt.settings.console_idle_minutes),
        created_at=now,
    )
    session.add(row)
    await audit.record(
        session,
        actor=account,
        action="console.login",
        subject_type="account",
        subject_id=account.id,
        data={"second_factor": needs_totp},
    )
    await session.flush()
    return raw, row, needs_totp


async def lookup(session: AsyncSession, raw: str | None) -> tuple[Account, StaffSession] | None:
    """The live console session behind the cookie (and its staff account), else None."""
    if not raw or len(raw) > 200:
        return None
    row = await session.scalar(select(StaffSession).where(StaffSession.token_hash == sha256(raw)))
    now = clock.now()
    if row is None or row.revoked_at is not None or row.expires_at <= now or row.idle_until <= now:
        return None
    account = await session.get(Account, row.account_id)
    if account is None or not account.active or account.role not in STAFF_ROLES:
        return None
    return account, row


def idle_due(rt: Runtime, row: StaffSession) -> bool:
    """Should this request push the idle deadline forward (in a write of its own)?"""
    fresh = clock.now() + timedelta(minutes=rt.settings.console_idle_minutes)
    return (fresh - row.idle_until).total_seconds() >= IDLE_WRITE_SECONDS


async def touch(session: AsyncSession, rt: Runtime, session_id: uuid.UUID) -> None:
    fresh = clock.now() + timedelta(minutes=rt.settings.console_idle_minutes)
    await session.execute(
        update(StaffSession).where(StaffSession.id == session_id).values(idle_until=fresh)
    )


async def logout(session: AsyncSession, session_id: uuid.UUID) -> None:
    await session.execute(
        update(StaffSession)
        .where(StaffSession.id == session_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )


async def revoke_all(session: AsyncSession, account_id: uuid.UUID) -> None:
    """End every console session of a staff member (role changed, deactivated)."""
    await session.execute(
        update(StaffSession)
        .where(StaffSession.account_id == account_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )


# ---------------------------------------------------------------- TOTP


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret)


def _matching_step(secret: str, code: str) -> int | None:
    """The 30-second step a 6-digit code belongs to (now, or one step either side)."""
    digits = "".join(ch for ch in code if ch.isdigit())
    if len(digits) != 6:
        return None
    totp = _totp(secret)
    now = clock.now()
    for drift in (0, -1, 1):
        at = now + timedelta(seconds=30 * drift)
        if totp.verify(digits, for_time=at, valid_window=0):
            return int(at.timestamp()) // 30
    return None


def _wrong_code() -> InvalidInput:
    return InvalidInput(
        "totp_invalid",
        "This code is wrong or was already used; type the current code.",
        keep_changes=True,
    )


async def check_totp(session: AsyncSession, staff: Staff, code: str) -> None:
    """The second factor of a console login: a current code, never the same one twice.
    A wrong code counts as a failed login (the same lockout as a wrong password)."""
    totp = await session.get(StaffTotp, staff.account.id, with_for_update=True)
    if totp is None or totp.enabled_at is None:
        staff.session.second_factor_done = True
        return
    step = _matching_step(totp.secret, code)
    if step is None or step <= totp.last_step:
        staff.account.failed_logins += 1
        raise _wrong_code()
    totp.last_step = step
    staff.session.second_factor_done = True
    staff.account.failed_logins = 0
    await audit.record(
        session,
        actor=staff.account,
        action="console.totp_passed",
        subject_type="account",
        subject_id=staff.account.id,
    )


async def totp_state(session: AsyncSession, account_id: uuid.UUID) -> StaffTotp | None:
    return await session.get(StaffTotp, account_id)


async def start_totp(session: AsyncSession, staff: Staff) -> StaffTotp:
    """A new (not yet enabled) secret for the staff member's authenticator app."""
    totp = await session.get(StaffTotp, staff.account.id)
    if totp is not None and totp.enabled_at is not None:
        return totp
    if totp is None:
        totp = StaffTotp(
            account_id=staff.account.id,
            secret=pyotp.random_base32(),
            last_step=0,
            created_at=clock.now(),
        )
        session.add(totp)
    else:
        totp.secret = pyotp.random_base32()
    await session.flush()
    return totp


def provisioning_uri(rt: Runtime, staff: Staff, secret: str) -> str:
    label = staff.account.email or str(staff.account.id)
    return _totp(secret).provisioning_uri(name=label, issuer_name=rt.settings.operator_name)


async def enable_totp(session: AsyncSession, staff: Staff, code: str) -> None:
    totp = await session.get(StaffTotp, staff.account.id, with_for_update=True)
    if totp is None:
        raise _wrong_code()
    step = _matching_step(totp.secret, code)
    if step is None:
        raise _wrong_code()
    totp.enabled_at = clock.now()
    totp.last_step = step
    await audit.record(
        session,
        actor=staff.account,
        action="console.totp_enabled",
        subject_type="account",
        subject_id=staff.account.id,
    )


async def disable_totp(session: AsyncSession, staff: Staff, code: str) -> None:
    totp = await session.get(StaffTotp, staff.account.id, with_for_update=True)
    if totp is None or totp.enabled_at is None:
        return
    step = _matching_step(totp.secret, code)
    if step is None or step <= totp.last_step:
        raise _wrong_code()
    await session.delete(totp)
    await audit.record(
        session,
        actor=staff.account,
        action="console.totp_disabled",
        subject_type="account",
        subject_id=staff.account.id,
    )
