"""Password hashing (argon2), random secrets and keyed digests."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from openmvno.config import Settings


class Passwords:
    """Argon2id hashing with the deployment's cost parameters."""

    def __init__(self, settings: Settings) -> None:
        self._ph = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
        )
        self._dummy = self._ph.hash("timing-equaliser")

    def hash(self, password: str) -> str:
        return self._ph.hash(password)

    def verify(self, hashed: str | None, password: str) -> bool:
        """True if ``password`` matches; costs the same when there is no account."""
        try:
            return self._ph.verify(hashed or self._dummy, password) and hashed is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, hashed: str) -> bool:
        return self._ph.check_needs_rehash(hashed)


def new_token() -> str:
    """An unguessable URL-safe token (256 bits)."""
    return secrets.token_urlsafe(32)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def keyed_digest(key: str, value: str) -> str:
    """HMAC-SHA256 of ``value``: for short secrets (codes, device PINs) kept at rest."""
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
