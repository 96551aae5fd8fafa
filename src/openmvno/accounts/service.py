"""Accounts: register, verify, log in, reset a password, create staff."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts import codes, tokens
from openmvno.accounts.identity import (
    check_password,
    is_email,
    normalize_email,
    normalize_login,
    normalize_phone,
)
from openmvno.accounts.models import Account, Channel, CodePurpose, Role
from openmvno.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyAttempts,
    Unauthorized,
)
from openmvno.i18n import normalize_language
from openmvno.runtime import Runtime


def _already_registered() -> Conflict:
    return Conflict(
        "already_registered",
        "An account with this phone number or email already exists; "
        "log in or reset the password.",
    )


async def get(session: AsyncSession, account_id: uuid.UUID) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound("account_not_found", "No such account.")
    return account


async def get_by_login(session: AsyncSession, rt: Runtime, login: str) -> Account | None:
    """Find an account by phone (any common format) or email."""
    try:
        key = normalize_login(login, rt.settings.default_region)
    except InvalidInput:
        return None
    column = Account.email if is_email(login) else Account.phone
    return await session.scalar(select(Account).where(column == key))


async def register(
    session: AsyncSession,
    rt: Runtime,
    *,
    name: str,
    password: str,
    phone: str | None = None,
    email: str | None = None,
    language: str | None = None,
    code_channel: Channel | None = None,
) -> Account:
    """Create an unverified subscriber and send a verification code."""
    name = name.strip()
    if not name:
        raise InvalidInput("name_required", "Please enter your name.")
    if not phone and not email:
        raise InvalidInput("contact_required", "Give a phone number or an email address.")
    e164 = normalize_phone(phone, rt.settings.default_region) if phone else None
    mail = normalize_email(email) if email else None
    check_password(password, personal=(e164, mail, mail.split("@")[0] if mail else None, name))
    taken = [c == v for c, v in ((Account.phone, e164), (Account.email, mail)) if v]
    clash = await session.scalar(select(Account).where(or_(*taken)).limit(1))
    if clash is not None:
        raise _already_registered()
    account = Account(
        id=uuid.uuid4(),
        role=Role.subscriber,
        name=name,
        phone=e164,
        email=mail,
        password_hash=rt.passwords.hash(password),
        language=normalize_language(language, rt.settings.default_language),
    )
    session.add(account)
    await session.flush()
    channel = code_channel or (Channel.sms if e164 else Channel.email)
    await codes.issue(session, rt, account=account, purpose=CodePurpose.verify, channel=channel)
    return account


async def _require(session: AsyncSession, rt: Runtime, login: str) -> Account:
    account = await get_by_login(session, rt, login)
    if account is None:
        raise NotFound("account_not_found", "No account uses this phone number or email.")
    return account


async def verify(session: AsyncSession, rt: Runtime, *, login: str, code: str) -> Account:
    """Mark the account verified when the code matches."""
    account = await _require(session, rt, login)
    if account.verified_at is not None:
        return account
    await codes.check(session, rt, account=account, purpose=CodePurpose.verify, code=code)
    account.verified_at = clock.now()
    return account


async def resend(
    session: AsyncSession,
    rt: Runtime,
    *,
    login: str,
    purpose: CodePurpose = CodePurpose.verify,
    channel: Channel | None = None,
) -> Channel:
    """Send a fresh code (optionally by the other channel); returns the channel used."""
    account = await _require(session, rt, login)
    if purpose is CodePurpose.verify and account.verified_at is not None:
        raise Conflict("already_verified", "This account is already verified; just log in.")
    chosen = channel or (Channel.sms if account.phone else Channel.email)
    await codes.issue(session, rt, account=account, purpose=purpose, channel=chosen)
    return chosen


async def authenticate_password(
    session: AsyncSession, rt: Runtime, *, login: str, password: str
) -> Account:
    """Check a password with lockout after repeated failures; returns the account."""
    now = clock.now()
    account = await get_by_login(session, rt, login)
    if account is not None and account.locked_until and account.locked_until > now:
        wait = math.ceil((account.locked_until - now).total_seconds())
        raise TooManyAttempts(
            "login_locked",
            "Too many failed logins. Try again in {minutes} minutes or reset your password.",
            retry_after=wait,
            minutes=math.ceil(wait / 60),
        )
    if not rt.passwords.verify(account.password_hash if account else None, password):
        if account is not None:
            account.failed_logins += 1
            if account.failed_logins % rt.settings.login_max_failures == 0:
                rounds = account.failed_logins // rt.settings.login_max_failures
                minutes = rt.settings.login_lock_minutes * min(2 ** (rounds - 1), 16)
                account.locked_until = now + timedelta(minutes=minutes)
        raise Unauthorized(
            "login_failed", "The phone number, email or password is wrong.", keep_changes=True
        )
    if not account or not account.active:
        raise Unauthorized("login_failed", "The phone number, email or password is wrong.")
    if account.verified_at is None:
        raise Forbidden(
            "account_not_verified",
            "Please verify your account with the code we sent before logging in.",
        )
    account.failed_logins = 0
    account.locked_until = None
    if rt.passwords.needs_rehash(account.password_hash):
        account.password_hash = rt.passwords.hash(password)
    return account


async def login(
    session: AsyncSession, rt: Runtime, *, login: str, password: str
) -> tuple[Account, tokens.TokenPair]:
    account = await authenticate_password(session, rt, login=login, password=password)
    return account, await tokens.issue_pair(session, rt, account)


async def request_password_reset(
    session: AsyncSession, rt: Runtime, *, login: str, channel: Channel | None = None
) -> None:
    """Send a reset code if the account exists; silent otherwise (no account probing)."""
    account = await get_by_login(session, rt, login)
    if account is None:
        return
    chosen = channel or (Channel.sms if account.phone else Channel.email)
    await codes.issue(
        session, rt, account=account, purpose=CodePurpose.reset_password, channel=chosen
    )


async def reset_password(
    session: AsyncSession, rt: Runtime, *, login: str, code: str, new_password: str
) -> Account:
    """Set a new password with a reset code; ends every session of the account."""
    account = await get_by_login(session, rt, login)
    if account is None:
        raise InvalidInput("code_invalid", "This code is not valid any more; ask for a new one.")
    await codes.check(session, rt, account=account, purpose=CodePurpose.reset_password, code=code)
    check_password(new_password, personal=(account.phone, account.email, account.name))
    account.password_hash = rt.passwords.hash(new_password)
    account.failed_logins = 0
    account.locked_until = None
    if account.verified_at is None:
        account.verified_at = clock.now()
    await tokens.revoke_all(session, account.id)
    return account


async def create_staff(
    session: AsyncSession,
    rt: Runtime,
    *,
    name: str,
    email: str,
    password: str,
    role: Role,
    phone: str | None = None,
) -> Account:
    """Create an agent or admin (verified at once); used by the CLI and the demo."""
    if role is Role.subscriber:
        raise InvalidInput("invalid_role", "Staff must be an agent or an admin.")
    mail = normalize_email(email)
    check_password(password, personal=(mail, name))
    if await session.scalar(select(Account).where(Account.email == mail)):
        raise _already_registered()
    account = Account(
        id=uuid.uuid4(),
        role=role,
        name=name,
        email=mail,
        phone=normalize_phone(phone, rt.settings.default_region) if phone else None,
        password_hash=rt.passwords.hash(password),
        language="en",
        verified_at=clock.now(),
    )
    session.add(account)
    await session.flush()
    return account
