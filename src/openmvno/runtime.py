"""The process-wide things every request and job needs, built once from Settings."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from openmvno.config import MIN_SECRET_LENGTH, ConfigurationError, Settings
from openmvno.db import make_engine, make_sessionmaker
from openmvno.security import Passwords


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    passwords: Passwords
    extras: dict[str, Any] = field(default_factory=dict)
    _secret_key: str | None = field(default=None, repr=False)

    @property
    def secret_key(self) -> str:
        """Signs CSRF tokens and codes, hashes device secrets (see :func:`load_secret_key`).
        Loaded on first use, so operator commands that never sign anything run without one
        in production; ``serve`` and ``worker`` refuse to start without one there."""
        if self._secret_key is None:
            self._secret_key = load_secret_key(self.settings)
        return self._secret_key

    async def close(self) -> None:
        await self.engine.dispose()


def load_secret_key(settings: Settings) -> str:
    """The configured secret; in development only, one generated once into the data
    directory (every process on that directory then shares it). Production never generates
    one: each process would make its own and codes signed by one fail in another."""
    configured = settings.secret_key.get_secret_value()
    if configured:
        return configured
    if settings.is_production:
        raise ConfigurationError(
            "OPENMVNO_SECRET_KEY is not set: set the same random string of at least "
            f"{MIN_SECRET_LENGTH} characters for every process (production never generates one)"
        )
    path = settings.data_dir / "secret.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: of processes starting together exactly one
        # key wins, and nobody reads a half-written file.
        fd, tmp = tempfile.mkstemp(dir=settings.data_dir, prefix=".secret.key.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


def build_runtime(settings: Settings) -> Runtime:
    from openmvno.formatting import timezone_problem, use_timezone

    problem = timezone_problem(settings.timezone)
    if problem:
        raise ConfigurationError(f"OPENMVNO_TIMEZONE: {problem}")
    use_timezone(settings.timezone)  # every date a person sees is in the operator's zone
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    sessions = make_sessionmaker(engine)
    sessions.configure(info={"settings": settings})  # services that get only a session
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        passwords=Passwords(settings),
    )
