"""One-time codes: 6 digits, keyed hash at rest, expiry, attempt limit, resend
cool-down, daily cap per target. Delivered through the outbox."""

from __future__ import annotations

import math
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts.models import Account, Channel, CodePurpose, OneTimeCode
from openmvno.errors import InvalidInput, TooManyAttempts
from openmvno.i18n import N_, translate
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxMessage
from openmvno.runtime import Runtime
from openmvno.security import keyed_digest, same

_TEXT = {
    CodePurpose.verify: N_("[{operator}] Your verification code is {code}. It expires in {minutes} minutes. Never share it: we will never ask you for it."),  # noqa: E501
    CodePurpose.reset_password: N_("[{operator}] Your password reset code is {code}. It expires in {minutes} minutes. If you did not ask for it, ignore this message."),  # noqa: E501
    CodePurpose.caller_check: N_("[{operator}] Customer service is verifying you. Your code is {code}; read it to the agent only if you are on the phone with us now."),  # noqa: E501
}


def target_for(account: Account, channel: Channel) -> str:
    target = account.phone if channel is Channel.sms else account.email
    if not target and channel is Channel.sms:
        raise InvalidInput(
            "channel_unavailable",
            "This account has no phone number on file; choose another way to receive the code.",
        )
    if not target:
        raise InvalidInput(
            "channel_unavailable",
            "This account has no email address on file; choose another way to receive the code.",
        )
    return target


async def issue(
    session: AsyncSession, rt: Runtime, *, account: Account, purpose: CodePurpose, channel: Channel
) -> OneTimeCode:
    """Create and send a new code, voiding earlier ones; enforces cool-down and daily cap."""
    s = rt.settings
    now = clock.now()
    target = target_for(account, channel)
    last = await session.scalar(
        select(OneTimeCode)
        .where(OneTimeCode.account_id == account.id, OneTimeCode.purpose == purpose)
        .order_by(OneTimeCode.created_at.desc())
        .limit(1)
    )
    if last is not None and last.resend_after > now:
        wait = math.ceil((last.resend_after - now).total_seconds())
        raise TooManyAttempts(
            "code_cooldown",
            "Please wait {seconds} seconds before asking for another code.",
            retry_after=wait,
            seconds=wait,
        )
    sent_today = await session.scalar(
        select(func.count())
        .select_from(OneTimeCode)
        .where(OneTimeCode.target == target, OneTimeCode.created_at > now - timedelta(days=1))
    )
    if (sent_today or 0) >= s.otp_daily_cap:
        raise TooManyAttempts(
            "code_daily_cap",
            "Too many codes were asked for today. Try another channel or tomorrow.",
            retry_after=24 * 3600,
        )
    await session.execute(
        update(OneTimeCode)
        .where(
            OneTimeCode.account_id == account.id,
            OneTimeCode.purpose == purpose,
            OneTimeCode.used_at.is_(None),
            OneTimeCode.voided_at.is_(None),
        )
        .values(voided_at=now)
    )
    code = f"{secrets.randbelow(10**6):06d}"
    otc = OneTimeCode(
        id=uuid.uuid4(),
        account_id=account.id,
        purpose=purpose,
        channel=channel,
        target=target,
        code_hash=keyed_digest(rt.secret_key, f"{purpose}:{code}"),
        expires_at=now + timedelta(minutes=s.otp_ttl_minutes),
        resend_after=now + timedelta(seconds=s.otp_resend_seconds),
        created_at=now,
    )
    session.add(otc)
    text = translate(
        account.language, _TEXT[purpose], operator=s.operator_name, code=code,
        minutes=s.otp_ttl_minutes,
    )
    key = f"otp:{otc.id}"
    if channel is Channel.sms:
        await notifications.send_sms(
            session, to=target, body=text, dedupe_key=key, account_id=account.id, sensitive=True
        )
    else:
        subject = translate(account.language, "Your verification code")
        await notifications.send_email(
            session, to=target, subject=subject, body=text, dedupe_key=key,
            account_id=account.id, sensitive=True,
        )
    await session.flush()
    return otc


async def rehearse(session: AsyncSession, rt: Runtime, *, purpose: CodePurpose) -> None:
    """The reads (and the no-op write) :func:`issue` makes, for nobody: a code request for
    a login no account uses, or one that needs no code, then takes about as long."""
    now = clock.now()
    nobody = uuid.uuid4()
    await session.scalar(
        select(OneTimeCode.id)
        .where(OneTimeCode.account_id == nobody, OneTimeCode.purpose == purpose)
        .order_by(OneTimeCode.created_at.desc())
        .limit(1)
    )
    await session.scalar(
        select(func.count())
        .select_from(OneTimeCode)
        .where(OneTimeCode.target == f"nobody:{nobody}",
               OneTimeCode.created_at > now - timedelta(days=1))
    )
    await session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.account_id == nobody, OneTimeCode.purpose == purpose,
               OneTimeCode.used_at.is_(None), OneTimeCode.voided_at.is_(None))
        .values(voided_at=now)
    )
    await session.scalar(
        select(OutboxMessage.id).where(OutboxMessage.dedupe_key == f"otp:{nobody}")
    )
    keyed_digest(rt.secret_key, f"{purpose}:{secrets.randbelow(10**6):06d}")


async def check(
    session: AsyncSession,
    rt: Runtime,
    *,
    account: Account | None,
    purpose: CodePurpose,
    code: str,
    allow_used: bool = False,
) -> None:
    """Accept the newest live code or raise; a wrong code counts (and is kept on rollback).

    ``account=None`` (nobody uses the login) does the same work and always refuses.
    ``allow_used`` also accepts the newest code once more after it was used (until it
    expires), so a verification sent twice succeeds twice; wrong tries still count."""
    now = clock.now()
    conditions = [
        OneTimeCode.account_id == (account.id if account is not None else uuid.uuid4()),
        OneTimeCode.purpose == purpose,
        OneTimeCode.voided_at.is_(None),
    ]
    if not allow_used:
        conditions.append(OneTimeCode.used_at.is_(None))
    otc = await session.scalar(
        select(OneTimeCode)
        .where(*conditions)
        .order_by(OneTimeCode.created_at.desc())
        .limit(1)
        .with_for_update()
    )
    digits = "".join(ch for ch in code if ch.isdigit())
    given = keyed_digest(rt.secret_key, f"{purpose}:{digits}")
    if otc is None:
        raise InvalidInput(
            "code_invalid", "This code is not valid any more; ask for a new one."
        )
    if otc.expires_at <= now:
        otc.voided_at = now
        raise InvalidInput(
            "code_expired", "This code has expired; ask for a new one.", keep_changes=True
        )
    if same(otc.code_hash, given):
        if otc.used_at is None:
            otc.used_at = now
        return
    otc.attempts += 1
    left = rt.settings.otp_max_attempts - otc.attempts
    if left <= 0:
        otc.voided_at = now
        raise InvalidInput(
            "code_attempts_exhausted",
            "Too many wrong codes; this code is void. Ask for a new one.",
            keep_changes=True,
        )
    if left == 1:
        raise InvalidInput(
            "code_wrong", "The code is wrong; 1 attempt left.", keep_changes=True, left=left
        )
    raise InvalidInput(
        "code_wrong",
        "The code is wrong; {left} attempts left.",
        keep_changes=True,
        left=left,
    )
