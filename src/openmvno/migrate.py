"""Apply Alembic migrations from code (``openmvno db upgrade``, ``serve``, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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


def _pending_sync(connection: Connection, revision: str = "head") -> list[str]:
    """Revisions not yet applied on ``connection`` up to ``revision``, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    current = MigrationContext.configure(connection).get_current_heads()
    wanted = [r.revision for r in script.iterate_revisions(revision, "base")]
    applied: set[str] = set()
    for head in current:
        applied.update(r.revision for r in script.iterate_revisions(head, "base"))
    return [r for r in reversed(wanted) if r not in applied]


async def pending(url: str) -> list[str]:
    """Migrations this database still needs (empty: it is up to date)."""
    from openmvno.db import make_engine

    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_pending_sync)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> list[str]:
    """Apply migrations; on PostgreSQL under an advisory lock, so many processes may start.
    Returns the revisions applied (oldest first; empty when already up to date)."""
    from sqlalchemy import text

    from openmvno.db import make_engine

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(7245001)"))
            todo = await conn.run_sync(_pending_sync, revision)
            await conn.run_sync(upgrade_sync, revision)
        return todo
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
