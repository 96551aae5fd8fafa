"""The process-wide things every request and job needs, built once from Settings."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from openmvno.config import Settings
from openmvno.db import make_engine, make_sessionmaker
from openmvno.security import Passwords


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    passwords: Passwords
    secret_key: str
    extras: dict[str, Any] = field(default_factory=dict)

    async def close(self) -> None:
        await self.engine.dispose()


def load_secret_key(settings: Settings) -> str:
    """The configured secret, or one generated once into the data directory."""
    configured = settings.secret_key.get_secret_value()
    if configured:
        return configured
    path = settings.data_dir / "secret.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def build_runtime(settings: Settings) -> Runtime:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        passwords=Passwords(settings),
        secret_key=load_secret_key(settings),
    )
