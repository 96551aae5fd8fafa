"""Accounts: register, verify, log in, reset a password, create staff.

An anonymous caller learns nothing about whether an account exists (OWASP ASVS 5.0,
V6.3.8): every flow answers the same status, code and body either way and does about the
same work.

- Registration answers "we sent you a code" either way; the owner of a number or email
  that already has an account gets a message about the attempt instead of a code.
- Asking for a code (verification, password reset) answers "sent" either way. The
  visible cool-down and daily cap count the caller's requests per login and channel, so
  they behave the same for an unknown login; the account's own limits then only decide,
  silently, whether a message really goes out.
- A code that does not work gets one answer (``code_invalid``) whatever the reason (wrong,
  expired, used up, none sent, nobody there), and the same lookup and hash work.
- A wrong password gets ``login_failed``; an unknown login runs the dummy argon2 check and
  is locked out exactly like an account (counted per login in the rate-limit table).

Guessing is limited per account or login (lockout, 5 tries per code) and per client
address: wrong passwords and codes together (``auth_failures_per_address`` per
``auth_failure_window_minutes``), and code requests (``code_requests_per_address`` an hour).
"""

from __future__ import annotations

import contextlib
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, case, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from openmvno import clock
from openmvno.accounts import codes, tokens
from openmvno.accounts.identity import (
    check_password,
    is_email,
    normalize_email,
    normalize_login,
    normalize_password,
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
from openmvno.i18n import N_, normalize_language, translate
from openmvno.notifications import service as notifications
from openmvno.ratelimit import service as ratelimit
from openmvno.runtime import Runtime

# Rate-limit scopes (``rate_events.scope``).
AUTH_FAILURES = "auth_failures"
"""Wrong passwords and wrong codes, per client address."""
CODE_REQUESTS = "code_requests"
"""Registrations and code requests, per client address."""
CODE_COOLDOWN = "code_cooldown"
CODE_DAILY = "code_daily"
UNKNOWN_LOGINS = "unknown_logins"
"""Failed logins for a login no account uses: the lockout an account would have."""
REGISTER_NOTICES = "register_notices"
REGISTER_NOTICES_PER_DAY = 3
_UNKNOWN_MEMORY = timedelta(days=1)
_MAX_LOCK_FACTOR = 16

REGISTER_NOTICE = N_("[{operator}] Someone tried to create an account with this phone number or email address, but it already has one. If it was you, log in or reset your password; if not, you can ignore this message.")  # noqa: E501
REGISTER_NOTICE_SUBJECT = N_("Someone tried to register with your address")


@dataclass(frozen=True)
class CodeRequest:
    """What a caller who asked for a code is told: the same whether or not an account
    uses the login (``login`` in its stored form)."""

    login: str
    channel: Channel


def _login_failed(*, keep_changes: bool = False) -> Unauthorized:
    return Unauthorized(
        "login_failed", "The phone number, email or password is wrong.", keep_changes=keep_changes
    )


def _code_refused() -> InvalidInput:
    return InvalidInput(
        "code_invalid",
        "This code is wrong or no longer valid. Check it, or ask for a new one.",
        keep_changes=True,
    )


def _locked(seconds: float) -> TooManyAttempts:
    wait = max(1, math.ceil(seconds))
    return TooManyAttempts(
        "login_locked",
        "Too many failed logins. Try again in {minutes} minutes or reset your password.",
        retry_after=wait,
        minutes=math.ceil(wait / 60),
    )


def _lock_length(rt: Runtime, rounds: int) -> timedelta:
    """The lock after ``rounds`` rounds of failures: 15 minutes, doubling, at most 16x."""
    factor = min(2 ** max(rounds - 1, 0), _MAX_LOCK_FACTOR)
    return timedelta(minutes=rt.settings.login_lock_minutes * factor)


async def get(session: AsyncSession, account_id: uuid.UUID) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound("account_not_found", "No such account.")
    return account


def _login_key(rt: Runtime, login: str) -> str | None:
    """The stored form of a login, or None when it is neither a phone number nor an email."""
    try:
        return normalize_login(login, rt.settings.default_region)
    except InvalidInput:
        return None


async def _by_key(session: AsyncSession, login: str, key: str) -> Account | None:
    column = Account.email if is_email(login) else Account.phone
    return await session.scalar(select(Account).where(column == key))


async def get_by_login(session: AsyncSession, rt: Runtime, login: str) -> Account | None:
    """Find an account by phone (any common format) or email."""
    key = _login_key(rt, login)
    return None if key is None else await _by_key(session, login, key)


# ---------------------------------------------------------------- limits per client address


def _failure_window(rt: Runtime) -> timedelta:
    return timedelta(minutes=rt.settings.auth_failure_window_minutes)


async def _guard_address(session: AsyncSession, rt: Runtime, client: str) -> None:
    """Refuse every password or code try from an address that failed too often lately."""
    wait = await ratelimit.wait_for(
        session, scope=AUTH_FAILURES, key=client,
        limit=rt.settings.auth_failures_per_address, window=_failure_window(rt),
    )
    if wait:
        raise ratelimit.limited(wait)


async def _count_address_failure(session: AsyncSession, rt: Runtime, client: str) -> None:
    await ratelimit.record(session, scope=AUTH_FAILURES, key=client, window=_failure_window(rt))


async def _gate_code_request(
    session: AsyncSession, rt: Runtime, *, purpose: CodePurpose, login: str, channel: Channel,
    client: str,
) -> None:
    """The limits a caller sees when asking for a code, counted per request (client
    address; purpose and login; login and channel), never per account: an unknown login
    meets the same cool-down and daily cap. Concurrent requests take turns."""
    s = rt.settings
    hour = timedelta(hours=1)
    await ratelimit.serialize(session, scope=CODE_REQUESTS, key=client)
    wait = await ratelimit.wait_for(
        session, scope=CODE_REQUESTS, key=client, limit=s.code_requests_per_address, window=hour
    )
    if wait:
        raise ratelimit.limited(wait)
    cooldown_key = f"{purpose}:{ratelimit.digest(login)}"
    cooldown = timedelta(seconds=s.otp_resend_seconds)
    await ratelimit.serialize(session, scope=CODE_COOLDOWN, key=cooldown_key)
    wait = await ratelimit.wait_for(
        session, scope=CODE_COOLDOWN, key=cooldown_key, limit=1, window=cooldown
    )
    if wait:
        raise TooManyAttempts(
            "code_cooldown",
            "Please wait {seconds} seconds before asking for another code.",
            retry_after=wait,
            seconds=wait,
        )
    daily_key = f"{channel}:{ratelimit.digest(login)}"
    day = timedelta(days=1)
    await ratelimit.serialize(session, scope=CODE_DAILY, key=daily_key)
    wait = await ratelimit.wait_for(
        session, scope=CODE_DAILY, key=daily_key, limit=s.otp_daily_cap, window=day
    )
    if wait:
        raise TooManyAttempts(
            "code_daily_cap",
            "Too many codes were asked for today. Try another channel or tomorrow.",
            retry_after=wait,
        )
    await ratelimit.record(session, scope=CODE_REQUESTS, key=client, window=hour)
    await ratelimit.record(session, scope=CODE_COOLDOWN, key=cooldown_key, window=cooldown)
    await ratelimit.record(session, scope=CODE_DAILY, key=daily_key, window=day)


def _reachable(account: Account, wanted: Channel) -> Channel:
    """``wanted`` if the account has that contact on file, else the one it has."""
    if wanted is Channel.email:
        return Channel.email if account.email else Channel.sms
    return Channel.sms if account.phone else Channel.email


async def _send_code(
    session: AsyncSession, rt: Runtime, account: Account, purpose: CodePurpose, wanted: Channel
) -> None:
    """Send a code if the account's own limits allow; say nothing either way (the caller
    was already answered by :func:`_gate_code_request`)."""
    # Its own cool-down or daily cap (e.g. asked through its other login): not sent.
    with contextlib.suppress(TooManyAttempts):
        await codes.issue(
            session, rt, account=account, purpose=purpose, channel=_reachable(account, wanted)
        )


# ---------------------------------------------------------------- register


async def _holder(session: AsyncSession, phone: str | None, email: str | None) -> Account | None:
    taken = [c == v for c, v in ((Account.phone, phone), (Account.email, email)) if v]
    return await session.scalar(select(Account).where(or_(*taken)).limit(1))


async def _warn_holder(
    session: AsyncSession, rt: Runtime, holder: Account, *, phone: str | None,
    email: str | None, channel: Channel,
) -> None:
    """Tell the owner of a phone number or email that someone tried to register with it
    (a few times a day at most; silently no more)."""
    by_sms = phone is not None and holder.phone == phone
    by_email = email is not None and holder.email == email
    if by_sms and (channel is Channel.sms or not by_email):
        via, target = Channel.sms, phone
    elif by_email:
        via, target = Channel.email, email
    else:
        return
    assert target is not None
    key = ratelimit.digest(target)
    day = timedelta(days=1)
    wait = await ratelimit.wait_for(
        session, scope=REGISTER_NOTICES, key=key, limit=REGISTER_NOTICES_PER_DAY, window=day
    )
    if wait:
        return
    await ratelimit.record(session, scope=REGISTER_NOTICES, key=key, window=day)
    text = translate(holder.language, REGISTER_NOTICE, operator=rt.settings.operator_name)
    dedupe = f"register-notice:{uuid.uuid4()}"
    if via is Channel.sms:
        await notifications.send_sms(
            session, to=target, body=text, dedupe_key=dedupe, account_id=holder.id
        )
    else:
        await notifications.send_email(
            session, to=target, subject=translate(holder.language, REGISTER_NOTICE_SUBJECT),
            body=text, dedupe_key=dedupe, account_id=holder.id,
        )


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
    client: str,
) -> CodeRequest:
    """Create an unverified subscriber and send a verification code.

    When the phone number or email already has an account, nothing is created and its
    owner gets a message about the attempt; the caller gets the same answer."""
    name = name.strip()
    if not name:
        raise InvalidInput("name_required", "Please enter your name.")
    if not phone and not email:
        raise InvalidInput("contact_required", "Give a phone number or an email address.")
    e164 = normalize_phone(phone, rt.settings.default_region) if phone else None
    mail = normalize_email(email) if email else None
    secret = check_password(password, personal=(e164, mail, name))
    channel = code_channel or (Channel.sms if e164 else Channel.email)
    if channel is Channel.email and mail is None:
        channel = Channel.sms
    if channel is Channel.sms and e164 is None:
        channel = Channel.email
    login = e164 if channel is Channel.sms else mail
    assert login is not None
    await _gate_code_request(
        session, rt, purpose=CodePurpose.verify, login=login, channel=channel, client=client
    )
    password_hash = rt.passwords.hash(secret)  # either way: the same work
    holder = await _holder(session, e164, mail)
    if holder is None:
        account = Account(
            id=uuid.uuid4(),
            role=Role.subscriber,
            name=name,
            phone=e164,
            email=mail,
            password_hash=password_hash,
            language=normalize_language(language, rt.settings.default_language),
        )
        try:
            async with session.begin_nested():
                session.add(account)
                await session.flush()
        except IntegrityError:  # registered at the same moment by someone else
            holder = await _holder(session, e164, mail)
            if holder is None:
                raise
        else:
            await _send_code(session, rt, account, CodePurpose.verify, channel)
            return CodeRequest(login, channel)
    await _warn_holder(session, rt, holder, phone=e164, email=mail, channel=channel)
    return CodeRequest(login, channel)


# ---------------------------------------------------------------- codes


async def verify(
    session: AsyncSession, rt: Runtime, *, login: str, code: str, client: str
) -> None:
    """Mark the account verified when the code matches. A code is always checked, even
    for a verified account (its newest code is then accepted again until it expires)."""
    await _guard_address(session, rt, client)
    account = await get_by_login(session, rt, login)
    try:
        await codes.check(
            session, rt, account=account, purpose=CodePurpose.verify, code=code,
            allow_used=account is not None and account.verified_at is not None,
        )
    except InvalidInput as exc:
        await _count_address_failure(session, rt, client)
        raise _code_refused() from exc
    assert account is not None  # codes.check refuses every code when there is no account
    if account.verified_at is None:
        account.verified_at = clock.now()


async def resend(
    session: AsyncSession,
    rt: Runtime,
    *,
    login: str,
    purpose: CodePurpose = CodePurpose.verify,
    channel: Channel | None = None,
    client: str,
) -> CodeRequest:
    """Send a fresh code (optionally by the other channel). The answer is the same whether
    or not an account uses the login, or is already verified; only an account that needs
    the code gets one."""
    key = normalize_login(login, rt.settings.default_region)  # a typo is the caller's own
    chosen = channel or (Channel.email if is_email(login) else Channel.sms)
    await _gate_code_request(
        session, rt, purpose=purpose, login=key, channel=chosen, client=client
    )
    account = await _by_key(session, login, key)
    wanted = purpose is CodePurpose.reset_password or (
        account is not None and account.verified_at is None
    )
    if account is not None and account.active and wanted:
        await _send_code(session, rt, account, purpose, chosen)
    else:
        await codes.rehearse(session, rt, purpose=purpose)  # about the same work, nothing sent
    return CodeRequest(key, chosen)


async def request_password_reset(
    session: AsyncSession, rt: Runtime, *, login: str, channel: Channel | None = None,
    client: str,
) -> CodeRequest:
    """Send a reset code if an account uses the login; the same answer otherwise."""
    return await resend(
        session, rt, login=login, purpose=CodePurpose.reset_password, channel=channel,
        client=client,
    )


async def reset_password(
    session: AsyncSession, rt: Runtime, *, login: str, code: str, new_password: str,
    client: str,
) -> Account:
    """Set a new password with a reset code; ends every session of the account."""
    await _guard_address(session, rt, client)
    account = await get_by_login(session, rt, login)
    try:
        await codes.check(
            session, rt, account=account, purpose=CodePurpose.reset_password, code=code
        )
    except InvalidInput as exc:
        await _count_address_failure(session, rt, client)
        raise _code_refused() from exc
    assert account is not None
    secret = check_password(new_password, personal=(account.phone, account.email, account.name))
    account.password_hash = rt.passwords.hash(secret)
    account.failed_logins = 0
    account.locked_until = None
    if account.verified_at is None:
        account.verified_at = clock.now()
    await tokens.revoke_all(session, account.id)
    return account


# ---------------------------------------------------------------- passwords


def _password_matches(rt: Runtime, hashed: str | None, password: str) -> tuple[bool, bool]:
    """(matches, hash again): checks the NFKC form, and the form as typed when it differs
    (a hash made before passwords were normalised). ``hashed=None`` costs the same."""
    normal = normalize_password(password)
    if rt.passwords.verify(hashed, normal):
        assert hashed is not None
        return True, rt.passwords.needs_rehash(hashed)
    if normal != password and rt.passwords.verify(hashed, password):
        return True, True
    return False, False


async def _claim_try(session: AsyncSession, rt: Runtime, account: Account) -> None:
    """Count this login as a failure before the password is checked (a success undoes
    it), unless the account is locked: one conditional UPDATE, so parallel tries queue on
    the row and the database decides, from the count it returns, when the lock starts."""
    s = rt.settings
    now = clock.now()
    tries = Account.failed_logins + 1
    lock_type = Account.__table__.c.locked_until.type

    def lock_from_now(rounds: int) -> ColumnElement[datetime]:
        return literal(now + _lock_length(rt, rounds), lock_type)

    locked_until = case(
        *[(tries == s.login_max_failures * r, lock_from_now(r)) for r in range(1, 5)],
        (tries % s.login_max_failures == 0, lock_from_now(5)),
        else_=Account.locked_until,
    )
    row = (
        await session.execute(
            update(Account)
            .where(
                Account.id == account.id,
                or_(Account.locked_until.is_(None), Account.locked_until <= now),
            )
            .values(failed_logins=tries, locked_until=locked_until)
            .returning(Account.failed_logins, Account.locked_until)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if row is None:
        until = await session.scalar(select(Account.locked_until).where(Account.id == account.id))
        raise _locked((until - now).total_seconds() if until else 1)
    set_committed_value(account, "failed_logins", row.failed_logins)
    set_committed_value(account, "locked_until", row.locked_until)


async def _claim_unknown_try(session: AsyncSession, rt: Runtime, key: str) -> None:
    """The same lockout for a login no account uses, counted in the rate-limit table."""
    s = rt.settings
    now = clock.now()
    digest = ratelimit.digest(key)
    await ratelimit.serialize(session, scope=UNKNOWN_LOGINS, key=digest)
    seen = await ratelimit.times(session, scope=UNKNOWN_LOGINS, key=digest, window=_UNKNOWN_MEMORY)
    if seen and len(seen) % s.login_max_failures == 0:
        until = seen[-1] + _lock_length(rt, len(seen) // s.login_max_failures)
        if until > now:
            raise _locked((until - now).total_seconds())
    await ratelimit.record(session, scope=UNKNOWN_LOGINS, key=digest, window=_UNKNOWN_MEMORY)


async def authenticate_password(
    session: AsyncSession, rt: Runtime, *, login: str, password: str, client: str
) -> Account:
    """Check a password with lockout after repeated failures; returns the account.

    The lock is checked (and the try counted) before the password, atomically, so
    parallel guesses get at most ``login_max_failures`` checks before the lock."""
    await _guard_address(session, rt, client)
    key = _login_key(rt, login)
    if key is None:
        raise _login_failed()  # not a phone number or email: no account can match
    account = await _by_key(session, login, key)
    if account is None:
        await _claim_unknown_try(session, rt, key)
    else:
        await _claim_try(session, rt, account)
    ok, rehash = _password_matches(rt, account.password_hash if account else None, password)
    if not ok or account is None:
        await _count_address_failure(session, rt, client)
        raise _login_failed(keep_changes=True)
    if not account.active:
        raise _login_failed()
    if account.verified_at is None:
        raise Forbidden(
            "account_not_verified",
            "Please verify your account with the code we sent before logging in.",
        )
    account.failed_logins = 0
    account.locked_until = None
    if rehash:
        account.password_hash = rt.passwords.hash(normalize_password(password))
    return account


async def login(
    session: AsyncSession, rt: Runtime, *, login: str, password: str, client: str
) -> tuple[Account, tokens.TokenPair]:
    account = await authenticate_password(
        session, rt, login=login, password=password, client=client
    )
    return account, await tokens.issue_pair(session, rt, account)


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
    secret = check_password(password, personal=(mail, name))
    if await session.scalar(select(Account).where(Account.email == mail)):
        raise Conflict(
            "already_registered",
            "An account with this phone number or email already exists; "
            "log in or reset the password.",
        )
    account = Account(
        id=uuid.uuid4(),
        role=role,
        name=name,
        email=mail,
        phone=normalize_phone(phone, rt.settings.default_region) if phone else None,
        password_hash=rt.passwords.hash(secret),
        language="en",
        verified_at=clock.now(),
    )
    session.add(account)
    await session.flush()
    return account
