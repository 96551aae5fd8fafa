"""Apply Alembic migrations from code (``openmvno db upgrade``, ``serve``, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.attributes["url"] = url
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade_sync(connection: Connection, revision: str = "head") -> None:
    """Upgrade on an open (sync-facing) connection, e.g. inside ``run_sync``."""
    command.upgrade(alembic_config(connection=connection), revision)


def downgrade_sync(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection=connection), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations; on PostgreSQL under an advisory lock, so many processes may start."""
    from sqlalchemy import text

    from openmvno.db import make_engine

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(7245001)"))
            await conn.run_sync(upgrade_sync, revision)
    finally:
        await engine.dispose()


async def downgrade(url: str, revision: str) -> None:
    from openmvno.db import make_engine

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(downgrade_sync, revision)
    finally:
        await engine.dispose()
