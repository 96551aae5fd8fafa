"""Database engine, session factory and the declarative ``Base``.

One transaction per request / job / command: the edge commits, services only flush.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Enum, Integer, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from openmvno import clock

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigInt = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit integer that is still SQLite's rowid alias when used as a primary key."""


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def str_enum(e: type[enum.Enum], length: int) -> Enum:
    """An enum stored as a checked VARCHAR (no native type: portable, easy to extend)."""
    return Enum(e, native_enum=False, length=length, validate_strings=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout."""
    kwargs: dict[str, Any] = {"echo": echo}
    if url.startswith("sqlite"):
        # Connections are pooled (opening one costs PRAGMAs); one writer at a time anyway.
        kwargs["connect_args"] = {"timeout": 30}
        if ":memory:" not in url and not url.endswith("://"):
            kwargs.update(pool_size=pool_size, max_overflow=0)
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_begin_immediate).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


READ_ONLY = "openmvno_readonly"
"""Execution option of a read-only transaction (see :func:`unit_of_work`)."""
_QUERY_ONLY = "openmvno_query_only"


def _sqlite_begin_immediate(conn: Any) -> None:
    # Writers: one at a time, taken at BEGIN, so no read-then-write upgrade can deadlock.
    # Readers: a deferred BEGIN (WAL: a snapshot, no lock, never waits for the writer)
    # with PRAGMA query_only on, so a read-only transaction cannot write. The pragma
    # belongs to the pooled connection; it is switched only when the mode changes.
    readonly = bool(conn.get_execution_options().get(READ_ONLY))
    info = conn.connection.info
    if info.get(_QUERY_ONLY, False) is not readonly:
        conn.exec_driver_sql(f"PRAGMA query_only = {'ON' if readonly else 'OFF'}")
        info[_QUERY_ONLY] = readonly
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class SessionFactory(async_sessionmaker[AsyncSession]):
    """Sessions on one engine; :attr:`readonly` makes sessions on the same pool whose
    every transaction is read-only (see :func:`unit_of_work`)."""

    readonly: async_sessionmaker[AsyncSession]


def readonly_options(dialect: str) -> dict[str, Any]:
    """Execution options that make a connection's transactions read-only."""
    if dialect == "postgresql":
        # asyncpg then opens each transaction with BEGIN READ ONLY: writes are refused.
        return {READ_ONLY: True, "postgresql_readonly": True}
    return {READ_ONLY: True}  # SQLite: see _sqlite_begin_immediate


def make_sessionmaker(engine: AsyncEngine) -> SessionFactory:
    factory = SessionFactory(engine, expire_on_commit=False, autoflush=True)
    readonly = engine.execution_options(**readonly_options(engine.dialect.name))
    factory.readonly = async_sessionmaker(readonly, expire_on_commit=False, autoflush=True)
    return factory


@asynccontextmanager
async def unit_of_work(
    factory: async_sessionmaker[AsyncSession], *, readonly: bool = False
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success, roll back on any exception
    (except a domain error that asks to keep its changes, such as a counted attempt).

    ``readonly``: the session reads only and takes no write lock (SQLite: a deferred
    ``BEGIN`` with ``PRAGMA query_only``, so readers never queue behind each other or a
    writer; PostgreSQL: ``BEGIN READ ONLY``). Any write in it fails, so reading never
    changes anything by accident; this holds for every transaction the session begins,
    also after a commit."""
    if readonly:
        if not isinstance(factory, SessionFactory):
            raise TypeError("a read-only unit of work needs sessions from make_sessionmaker")
        factory = factory.readonly
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException as exc:
            if getattr(exc, "keep_changes", False) and not readonly:
                await session.commit()
            else:
                await session.rollback()
            raise

