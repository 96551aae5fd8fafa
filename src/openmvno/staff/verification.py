"""Caller verification: before an agent changes anything on an account, the caller proves
they hold it — a one-time code sent to the account's phone (SMS) or email and read back,
or the device serial of one of its lines together with the account name. A verification
lasts ``console_verify_minutes`` for that agent and that account only."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts import codes
from openmvno.accounts.models import Account, Channel, CodePurpose, OneTimeCode
from openmvno.audit import service as audit
from openmvno.errors import Forbidden, InvalidInput
from openmvno.lines.identifiers import normalize_token
from openmvno.lines.models import Line
from openmvno.runtime import Runtime
from openmvno.staff.models import CallerVerification

METHODS = ("sms_code", "email_code", "device_serial")


def not_verified() -> Forbidden:
    return Forbidden(
        "caller_not_verified",
        "Verify the caller first: a code sent to their line or email, or the device serial "
        "and the account name.",
    )


async def verified_until(
    session: AsyncSession, *, staff_id: uuid.UUID, account_id: uuid.UUID
) -> datetime | None:
    """Until when this agent's caller is verified as the holder of this account (None:
    not verified, or it ran out)."""
    until = await session.scalar(
        select(func.max(CallerVerification.expires_at)).where(
            CallerVerification.staff_id == staff_id, CallerVerification.account_id == account_id
        )
    )
    return until if until is not None and until > clock.now() else None


async def require(session: AsyncSession, *, staff_id: uuid.UUID, account_id: uuid.UUID) -> None:
    """Refuse (403 ``caller_not_verified``) unless the caller is verified right now."""
    if await verified_until(session, staff_id=staff_id, account_id=account_id) is None:
        raise not_verified()


async def _grant(
    session: AsyncSession, rt: Runtime, *, staff: Account, account: Account, method: str
) -> CallerVerification:
    now = clock.now()
    row = CallerVerification(
        id=uuid.uuid4(),
        staff_id=staff.id,
        account_id=account.id,
        method=method,
        verified_at=now,
        expires_at=now + timedelta(minutes=rt.settings.console_verify_minutes),
    )
    session.add(row)
    await audit.record(
        session,
        actor=staff,
        action="caller.verified",
        subject_type="account",
        subject_id=account.id,
        account_id=account.id,
        data={"method": method},
    )
    await session.flush()
    return row


async def send_code(
    session: AsyncSession, rt: Runtime, *, staff: Account, account: Account, channel: Channel
) -> None:
    """Send the caller a one-time code (the accounts code service: cool-down, daily cap,
    hashed at rest; the agent never sees it)."""
    await codes.issue(
        session, rt, account=account, purpose=CodePurpose.caller_check, channel=channel
    )
    await audit.record(
        session,
        actor=staff,
        action="caller.code_sent",
        subject_type="account",
        subject_id=account.id,
        account_id=account.id,
        data={"channel": channel.value},
    )


async def check_code(
    session: AsyncSession, rt: Runtime, *, staff: Account, account: Account, code: str
) -> CallerVerification:
    """The code the caller read out; a wrong one counts against the code's attempts."""
    await codes.check(session, rt, account=account, purpose=CodePurpose.caller_check, code=code)
    last = await session.scalar(
        select(OneTimeCode.channel)
        .where(
            OneTimeCode.account_id == account.id, OneTimeCode.purpose == CodePurpose.caller_check
        )
        .order_by(OneTimeCode.created_at.desc())
        .limit(1)
    )
    method = "email_code" if last == Channel.email else "sms_code"
    return await _grant(session, rt, staff=staff, account=account, method=method)


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


async def check_device(
    session: AsyncSession,
    rt: Runtime,
    *,
    staff: Account,
    account: Account,
    serial: str,
    name: str,
) -> CallerVerification:
    """Device serial of one of the account's lines + the account holder's name."""
    wanted = normalize_token(serial)
    found = (
        await session.scalar(
            select(Line.id).where(Line.account_id == account.id, Line.device_serial == wanted)
        )
        if wanted
        else None
    )
    if found is None or not name.strip() or _fold(name) != _fold(account.name):
        await audit.record(
            session,
            actor=staff,
            action="caller.verify_failed",
            subject_type="account",
            subject_id=account.id,
            account_id=account.id,
            data={"method": "device_serial"},
        )
        raise InvalidInput(
            "caller_check_failed",
            "The device serial and the account name do not match this account.",
            keep_changes=True,
        )
    return await _grant(session, rt, staff=staff, account=account, method="device_serial")
