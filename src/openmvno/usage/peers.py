"""Network peers and their API keys (``openmvno peers create|list|revoke``).

A key is ``omp_`` + 43 random URL-safe characters (256 bits), shown once at creation;
only its SHA-256 is stored, so a stolen database holds no usable key. Scopes say what a
peer may do: ``usage:write`` sends usage records. A revoked peer's key stops at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.db import Base
from openmvno.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from openmvno.fields import clean_text
from openmvno.usage.models import NetworkPeer

SCOPES = frozenset({"usage:write"})
"""Every scope a peer may hold."""
KEY_PREFIX = "omp_"
PEERS: Table = Base.metadata.tables[NetworkPeer.__tablename__]
_BY_HASH = select(PEERS.c.id, PEERS.c.name, PEERS.c.scopes, PEERS.c.revoked_at).where(
    PEERS.c.key_hash == bindparam("key_hash")
)


@dataclass(frozen=True, slots=True)
class Caller:
    """The peer behind a request."""

    id: object
    name: str
    scopes: frozenset[str]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


async def create(
    session: AsyncSession, *, name: str, scopes: list[str] | None = None
) -> tuple[NetworkPeer, str]:
    """A new peer and its key (the only time the key is seen)."""
    name = clean_text(name, max_length=60, min_length=1)
    wanted = sorted(set(scopes or ["usage:write"]))
    unknown = set(wanted) - SCOPES
    if unknown:
        raise InvalidInput(
            "scope_unknown", "Unknown scope {scope}; known: {known}.",
            scope=sorted(unknown)[0], known=", ".join(sorted(SCOPES)),
        )
    if await session.scalar(select(NetworkPeer.id).where(NetworkPeer.name == name)):
        raise Conflict("peer_exists", "A peer named {name} already exists.", name=name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    peer = NetworkPeer(name=name, key_hash=hash_key(key), key_prefix=key[:12], scopes=wanted)
    session.add(peer)
    await session.flush()
    return peer, key


async def list_peers(session: AsyncSession) -> list[NetworkPeer]:
    return list((await session.scalars(select(NetworkPeer).order_by(NetworkPeer.name))).all())


async def revoke(session: AsyncSession, *, name: str) -> NetworkPeer:
    """Revoke a peer's key (idempotent); an unknown name is a 404."""
    peer = await session.scalar(select(NetworkPeer).where(NetworkPeer.name == name))
    if peer is None:
        raise NotFound("peer_not_found", "There is no peer named {name}.", name=name)
    if peer.revoked_at is None:
        await session.execute(
            update(NetworkPeer).where(NetworkPeer.id == peer.id).values(revoked_at=clock.now())
        )
        await session.refresh(peer)
    return peer


async def authenticate(session: AsyncSession, key: str | None, *, scope: str) -> Caller:
    """The peer holding ``key`` with ``scope``: no key or an unknown or revoked one is a
    401, a key without the scope a 403 (one indexed SELECT)."""
    if not key:
        raise Unauthorized("api_key_missing", "Send your API key in the X-API-Key header.")
    if len(key) > 200 or not key.startswith(KEY_PREFIX):
        raise Unauthorized("api_key_invalid", "This API key is not valid.")
    conn = await session.connection()
    row = (await conn.execute(_BY_HASH, {"key_hash": hash_key(key)})).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("api_key_invalid", "This API key is not valid.")
    scopes = row.scopes if isinstance(row.scopes, list) else []
    if scope not in scopes:
        raise Forbidden("scope_missing", "This API key may not do this ({scope}).", scope=scope)
    return Caller(row.id, row.name, frozenset(scopes))


__all__ = ["SCOPES", "Caller", "authenticate", "create", "hash_key", "list_peers", "revoke"]
