"""Reusable, typed dependencies for API routes: runtime, session, caller, language."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from openmvno.accounts import tokens
from openmvno.accounts.models import Account, Role, TokenKind
from openmvno.db import unit_of_work
from openmvno.errors import Forbidden, Unauthorized
from openmvno.runtime import Runtime

READ_METHODS = frozenset({"GET", "HEAD"})
"""Requests that only read: their transaction is read-only (see :func:`get_session`)."""


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent.

    GET and HEAD get a read-only transaction: no write lock (SQLite readers never queue
    behind each other or behind a writer) and any write is refused, so reading a page
    never changes anything."""
    readonly = request.method in READ_METHODS
    runtime: Runtime = request.app.state.runtime
    async with unit_of_work(runtime.sessions, readonly=readonly) as session:
        yield session


async def get_language(request: Request) -> str:
    language: str = request.state.language
    return language


RT = Annotated[Runtime, Depends(get_runtime)]
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Language = Annotated[str, Depends(get_language)]

_bearer = HTTPBearer(auto_error=False, description="Access token from /api/v1/auth/token")


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None, session: AsyncSession
) -> Account | None:
    """The account behind the bearer token; None without one; a bad one is a 401.

    For GET and HEAD the token is checked in the request's own read-only session (one
    statement). Any other method checks it in its own short read-only session, so the
    route starts with no transaction open (a route may need to call the outside world
    between its own)."""
    if credentials is None:
        return None
    raw = credentials.credentials
    if request.method in READ_METHODS:
        account = await tokens.authenticate(session, raw, TokenKind.access)
    else:
        runtime: Runtime = request.app.state.runtime
        async with unit_of_work(runtime.sessions, readonly=True) as own:
            account = await tokens.authenticate(own, raw, TokenKind.access)
    if account is None:
        raise Unauthorized("token_invalid", "Your session has ended; please log in again.")
    return account


async def optional_account(
    request: Request, credentials: Bearer, session: Session
) -> Account | None:
    """The caller if a bearer token is sent (a bad one is a 401), else None (a guest)."""
    return await _caller(request, credentials, session)


async def current_account(request: Request, credentials: Bearer, session: Session) -> Account:
    """The caller; no token is a 401 (one dependency, not two: each costs per request)."""
    account = await _caller(request, credentials, session)
    if account is None:
        raise Unauthorized("not_authenticated", "Please log in.")
    return account


Me = Annotated[Account, Depends(current_account)]

BEARER_SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}]}
"""``openapi_extra`` of a route that reads the bearer token itself (see :func:`bearer_caller`)."""


async def bearer_caller(request: Request, session: AsyncSession | AsyncConnection) -> Account:
    """The caller of a hot read route that takes no dependencies (FastAPI resolving them
    costs about as much CPU as the read itself): the same checks and answers as :data:`Me`."""
    scheme, _, raw = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw:
        raise Unauthorized("not_authenticated", "Please log in.")
    account = await tokens.authenticate(session, raw, TokenKind.access)
    if account is None:
        raise Unauthorized("token_invalid", "Your session has ended; please log in again.")
    return account
MaybeMe = Annotated[Account | None, Depends(optional_account)]


def require_role(*roles: Role) -> Callable[..., Coroutine[Any, Any, Account]]:
    async def check(account: Me) -> Account:
        if account.role not in roles:
            raise Forbidden("forbidden", "You are not allowed to do this.")
        return account

    return check


Staff = Annotated[Account, Depends(require_role(Role.agent, Role.admin))]
Admin = Annotated[Account, Depends(require_role(Role.admin))]
