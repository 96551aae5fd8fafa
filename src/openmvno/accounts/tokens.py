"""Opaque bearer tokens (hashed at rest): short access tokens, rotating refresh
tokens with reuse detection, and portal sessions carrying a CSRF secret."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ScalarSelect, String, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import configure_mappers, make_transient_to_detached
from sqlalchemy.orm.base import manager_of_class

from openmvno import clock
from openmvno.accounts.models import Account, AuthToken, TokenKind
from openmvno.db import UTCDateTime
from openmvno.db_fast import FastSelect
from openmvno.errors import Unauthorized
from openmvno.runtime import Runtime
from openmvno.security import new_token, sha256


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


async def _issue(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    kind: TokenKind,
    ttl: timedelta,
    family_id: uuid.UUID | None = None,
    csrf_secret: str | None = None,
) -> str:
    raw = new_token()
    session.add(
        AuthToken(
            account_id=account_id,
            kind=kind,
            token_hash=sha256(raw),
            family_id=family_id or uuid.uuid4(),
            csrf_secret=csrf_secret,
            expires_at=clock.now() + ttl,
        )
    )
    return raw


async def issue_pair(
    session: AsyncSession, rt: Runtime, account: Account, family_id: uuid.UUID | None = None
) -> TokenPair:
    family = family_id or uuid.uuid4()
    minutes = rt.settings.access_token_minutes
    access = await _issue(
        session, account_id=account.id, kind=TokenKind.access, ttl=timedelta(minutes=minutes),
        family_id=family,
    )
    refresh = await _issue(
        session, account_id=account.id, kind=TokenKind.refresh,
        ttl=timedelta(days=rt.settings.refresh_token_days), family_id=family,
    )
    await session.flush()
    return TokenPair(access, refresh, minutes * 60)


async def issue_session(session: AsyncSession, rt: Runtime, account: Account) -> str:
    raw = await _issue(
        session, account_id=account.id, kind=TokenKind.session,
        ttl=timedelta(days=rt.settings.session_days), csrf_secret=new_token(),
    )
    await session.flush()
    return raw


async def lookup(session: AsyncSession, raw: str, kind: TokenKind) -> AuthToken | None:
    """The live token row for ``raw`` or None (expired, revoked, unknown)."""
    token = await session.scalar(
        select(AuthToken).where(AuthToken.token_hash == sha256(raw), AuthToken.kind == kind)
    )
    if token is None or token.revoked_at is not None or token.expires_at <= clock.now():
        return None
    return token


_ACCOUNTS = Account.__table__
_TOKENS = AuthToken.__table__
_ACCOUNT_MANAGER = manager_of_class(Account)
_TOKEN_OF_ACCOUNT = _TOKENS.join(_ACCOUNTS, _ACCOUNTS.c.id == _TOKENS.c.account_id)
_LIVE_TOKEN = (
    _TOKENS.c.token_hash == bindparam("token_hash", type_=String()),
    _TOKENS.c.kind == bindparam("kind", type_=_TOKENS.c.kind.type),
    _TOKENS.c.revoked_at.is_(None),
    _TOKENS.c.expires_at > bindparam("now", type_=UTCDateTime()),
    _ACCOUNTS.c.active.is_(True),
)
"""What makes a token good: the one of ``:token_hash`` and ``:kind``, not revoked, not
expired at ``:now``, of an active account."""
_AUTHENTICATE = select(*_ACCOUNTS.c).select_from(_TOKEN_OF_ACCOUNT).where(*_LIVE_TOKEN)
"""Built once; every request reuses it and its compiled form."""
_AUTHENTICATE_FAST = FastSelect(_AUTHENTICATE)


def live_token_account() -> ScalarSelect[Any]:
    """The id of the active account behind the live token ``:token_hash`` of ``:kind`` at
    ``:now`` (the checks of :func:`authenticate`) as a scalar subquery, for a hot read
    that authenticates inside its own SELECT; bind the parameters with
    :func:`token_params`."""
    return (
        select(_TOKENS.c.account_id).select_from(_TOKEN_OF_ACCOUNT).where(*_LIVE_TOKEN)
    ).scalar_subquery()


def token_params(raw: str, kind: TokenKind) -> dict[str, Any]:
    """The parameters of :func:`live_token_account` for the token ``raw``."""
    return {"token_hash": sha256(raw), "kind": kind, "now": clock.now()}


async def authenticate(
    session: AsyncSession | AsyncConnection, raw: str, kind: TokenKind
) -> Account | None:
    """The active account behind a live token of ``kind`` (else None), in one SELECT of
    the token joined to its account, through a session or a read connection
    (:func:`openmvno.db.read_connection`). The account comes back detached, as if loaded
    in a transaction already ended: reading it needs no session, changing it needs one."""
    rows = await _AUTHENTICATE_FAST.all(session, token_params(raw, kind))
    if not rows:
        return None
    row = rows[0]
    if isinstance(session, AsyncSession):
        loaded = session.sync_session.identity_map.get((Account, (row.id,), None))
        if isinstance(loaded, Account):
            return loaded
    # As a query loads it (no attribute events), then marked as loaded and detached.
    _configure_mappers_once()  # a Core query does not do it
    account: Account = _ACCOUNT_MANAGER.new_instance()
    account.__dict__.update(row._asdict())
    make_transient_to_detached(account)
    return account


@functools.cache
def _configure_mappers_once() -> None:
    configure_mappers()


async def rotate(session: AsyncSession, rt: Runtime, raw_refresh: str) -> TokenPair:
    """Swap a refresh token for a new pair; reuse of a spent one revokes its whole family."""
    token = await session.scalar(
        select(AuthToken)
        .where(AuthToken.token_hash == sha256(raw_refresh), AuthToken.kind == TokenKind.refresh)
        .with_for_update()
    )
    now = clock.now()
    if token is None or token.expires_at <= now:
        raise Unauthorized("token_invalid", "Your session has ended; please log in again.")
    if token.revoked_at is not None:
        await revoke_family(session, token.family_id)
        raise Unauthorized(
            "token_reused", "Your session has ended; please log in again.", keep_changes=True
        )
    account = await session.get(Account, token.account_id)
    if account is None or not account.active:
        raise Unauthorized("token_invalid", "Your session has ended; please log in again.")
    await session.execute(
        update(AuthToken)
        .where(AuthToken.family_id == token.family_id, AuthToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return await issue_pair(session, rt, account, family_id=token.family_id)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(AuthToken)
        .where(AuthToken.family_id == family_id, AuthToken.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )


async def revoke(session: AsyncSession, raw: str) -> None:
    """Log out: revoke the token and everything issued with it."""
    token = await session.scalar(select(AuthToken).where(AuthToken.token_hash == sha256(raw)))
    if token is not None:
        await revoke_family(session, token.family_id)


async def revoke_all(session: AsyncSession, account_id: uuid.UUID) -> None:
    await session.execute(
        update(AuthToken)
        .where(AuthToken.account_id == account_id, AuthToken.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
