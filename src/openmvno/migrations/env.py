"""Alembic environment: async engine from settings, or a connection handed in."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from openmvno.config import get_settings
from openmvno.db import make_engine
from openmvno.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = make_engine(url)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    url = context.config.attributes.get("url") or get_settings().database_url
    asyncio.run(_run_async(url))
