"""The PostgreSQL server the tests use (``OPENMVNO_TEST_DATABASE_URL``; unset: SQLite)."""

from __future__ import annotations

import os

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

PG_URL = os.environ.get("OPENMVNO_TEST_DATABASE_URL", "")


async def fresh_pg_database(name: str) -> str:
    """A new, empty database ``name`` on the test server (dropped first if it is there);
    its URL is the test URL with only the database changed, so a Unix-socket URL
    (``postgresql+asyncpg://postgres@/postgres?host=/run/dir&port=5432``) works too."""
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
