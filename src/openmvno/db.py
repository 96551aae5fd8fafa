"""Database engine, session factory and the declarative ``Base``.

One transaction per request / job / command: the edge commits, services only flush.
"""

from __future__ import annotations

import enum
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Enum,
    Integer,
    MetaData,
    any_,
    bindparam,
    event,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import Executable
from sqlalchemy.types import TypeDecorator

from openmvno import clock, db_inline
from openmvno.ids import new_id

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
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)


def _in_memory(url: str) -> bool:
    return ":memory:" in url or url.endswith("://")


def json_text(value: Any) -> str:
    """JSON columns' text, written by orjson (several times faster than ``json.dumps``
    on the batch paths: orders' results, receipts' items, outbox payloads). Keys that
    are not strings become strings, as ``json.dumps`` makes them."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def among(session: AsyncSession, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN values`` for a batch's hundreds of ids: on PostgreSQL ``column =
    ANY($1)`` with one array parameter (one SQL text whatever the count, so the driver's
    prepared statement is reused, and no per-value parameters to process and parse);
    elsewhere the usual ``IN``."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        match: ColumnElement[bool] = column == any_(
            bindparam(None, values, type_=postgresql.ARRAY(column.type))
        )
        return match
    within: ColumnElement[bool] = column.in_(values)
    return within


def _pool(url: str, pool_size: int) -> dict[str, Any]:
    # Every engine writes and reads its JSON columns with orjson.
    json_codec = {"json_serializer": json_text, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        # Connections are pooled (opening one costs PRAGMAs); one writer at a time anyway.
        if _in_memory(url):
            return json_codec
        return {"pool_size": pool_size, "max_overflow": 0, **json_codec}
    # No ping on every checkout (a round trip per request): see _ping_when_idle.
    return {"pool_size": pool_size, "max_overflow": pool_size, **json_codec}


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An async engine for writers; SQLite gets WAL, foreign keys and a busy timeout.

    Beside it, on a database file or server, a pool of read-only connections for
    :func:`unit_of_work` ``(readonly=True)`` (see :func:`_make_reader`); disposing of this
    engine disposes of that pool too."""
    kwargs: dict[str, Any] = {"echo": echo, **_pool(url, pool_size)}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
    else:
        _ping_when_idle(engine)
    if not (url.startswith("sqlite") and _in_memory(url)):
        reader = _make_reader(url, pool_size=pool_size, echo=echo)
        _READERS[engine.sync_engine] = reader
        event.listen(engine.sync_engine, "engine_disposed", lambda _e: reader.sync_engine.dispose())
    return engine


_READERS: weakref.WeakKeyDictionary[Any, AsyncEngine] = weakref.WeakKeyDictionary()


def _make_reader(url: str, *, pool_size: int, echo: bool) -> AsyncEngine:
    """Read-only connections in autocommit mode: a read is its statements and nothing
    else (no BEGIN, COMMIT or reset round trips), and the database itself refuses any
    write on them (SQLite ``PRAGMA query_only``; PostgreSQL
    ``default_transaction_read_only``). On SQLite a reader never takes the write lock,
    and runs inline on the event loop (:mod:`openmvno.db_inline`)."""
    kwargs: dict[str, Any] = {
        "echo": echo,
        "skip_autocommit_rollback": True,
        **_pool(url, pool_size),
    }
    if url.startswith("sqlite"):
        # Plain sqlite3 connections in autocommit, run inline (see db_inline).
        path = make_url(url).database
        if not path:
            raise ValueError(f"no database file in {url!r}")
        return create_async_engine(url, async_creator=db_inline.reader_connector(path), **kwargs)
    kwargs["isolation_level"] = "AUTOCOMMIT"
    # A fixed pool, opened as needed and kept: overflow connections are closed as soon as
    # they are returned, so a burst above the pool size opened and closed connections
    # (each a login, settings and type look-ups) on every request: read latency went
    # from milliseconds to a second at 500 requests/s. Past the pool, a reader waits
    # for a connection instead (a request holds at most one reader connection).
    kwargs["max_overflow"] = 0
    kwargs["connect_args"] = {"server_settings": {"default_transaction_read_only": "on"}}
    reader = create_async_engine(url, **kwargs)
    _ping_when_idle(reader)
    return reader


IDLE_PING_SECONDS = 10.0
"""A pooled server connection unused for longer is pinged before it is handed out."""


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection before use only if it sat idle for a while (a restarted
    server, a proxy's idle timeout); one just given back is used at once. SQLAlchemy's
    ``pool_pre_ping`` pings on every checkout: a round trip per request."""
    dialect = engine.dialect

    def checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since <= IDLE_PING_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:  # whatever the failure, the pool takes a fresh connection
            raise DisconnectionError("idle connection failed its ping") from exc

    event.listen(engine.sync_engine.pool, "checkin", checkin)
    event.listen(engine.sync_engine.pool, "checkout", checkout)


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
"""Execution option of a read-only transaction on an in-memory SQLite database, whose
readers share the writers' one connection (see :func:`_sqlite_begin_immediate`)."""
_QUERY_ONLY = "openmvno_query_only"


def _sqlite_begin_immediate(conn: Any) -> None:
    # Writers: one at a time, taken at BEGIN, so no read-then-write upgrade can deadlock.
    # Readers of an in-memory database (no pool of their own): a deferred BEGIN with
    # PRAGMA query_only on; the pragma is switched only when the mode changes.
    readonly = bool(conn.get_execution_options().get(READ_ONLY))
    info = conn.connection.info
    if info.get(_QUERY_ONLY, False) is not readonly:
        conn.exec_driver_sql(f"PRAGMA query_only = {'ON' if readonly else 'OFF'}")
        info[_QUERY_ONLY] = readonly
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class SessionFactory(async_sessionmaker[AsyncSession]):
    """Sessions for writers; :attr:`readonly` makes sessions whose every statement is
    read-only (see :func:`unit_of_work`)."""

    readonly: async_sessionmaker[AsyncSession]
    reader: AsyncEngine
    """The engine of :attr:`readonly` (the read-only pool)."""
    writer: AsyncEngine
    """The engine of the writers' sessions."""


def make_sessionmaker(engine: AsyncEngine) -> SessionFactory:
    factory = SessionFactory(engine, expire_on_commit=False, autoflush=True)
    reader = _READERS.get(engine.sync_engine)
    if reader is None:  # in-memory SQLite: readers share the writers' connection
        reader = engine.execution_options(**{READ_ONLY: True})
    factory.readonly = async_sessionmaker(reader, expire_on_commit=False, autoflush=True)
    factory.reader = reader
    factory.writer = engine
    return factory


async def execute_alone(
    factory: async_sessionmaker[AsyncSession], statement: Executable,
    params: dict[str, Any] | None = None,
) -> int:
    """Run one writing statement (with ``params`` for its bound parameters) as a
    transaction of its own; returns the rows it matched.

    On PostgreSQL it runs in autocommit, one round trip (a unit of work costs three:
    BEGIN, the statement, COMMIT) — for a worker's bookkeeping after each delivered
    message. On SQLite it runs in a unit of work (BEGIN IMMEDIATE, as every writer; all
    in-process, nothing to save)."""
    if isinstance(factory, SessionFactory) and factory.writer.dialect.name == "postgresql":
        async with factory.writer.connect() as conn:
            alone = await conn.execution_options(isolation_level="AUTOCOMMIT")
            done = await alone.execute(statement, params)
            return int(done.rowcount)
    async with unit_of_work(factory) as session:
        result = await session.execute(statement, params)
        return int(result.rowcount)  # type: ignore[attr-defined]


@asynccontextmanager
async def read_connection(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncConnection]:
    """A connection of the read-only pool without a session around it, for the hottest
    reads (:class:`openmvno.db_fast.FastSelect`): the same database answers as a
    ``unit_of_work(readonly=True)`` session, without the session's bookkeeping."""
    if not isinstance(factory, SessionFactory):
        raise TypeError("a read connection needs sessions from make_sessionmaker")
    async with factory.reader.connect() as conn:
        yield conn


@asynccontextmanager
async def unit_of_work(
    factory: async_sessionmaker[AsyncSession], *, readonly: bool = False
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success, roll back on any exception
    (except a domain error that asks to keep its changes, such as a counted attempt).

    ``readonly``: the session only reads, on the read-only pool (see
    :func:`_make_reader`): it never takes the write lock, so on SQLite readers never queue
    behind each other or a writer, and any write in it fails, so reading never changes
    anything by accident. Its statements run in autocommit, each seeing the latest
    committed data (PostgreSQL's READ COMMITTED does the same inside a transaction)."""
    if readonly:
        if not isinstance(factory, SessionFactory):
            raise TypeError("a read-only unit of work needs sessions from make_sessionmaker")
        async with factory.readonly() as session:
            yield session  # nothing to commit; closing it returns its connection
        return
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException as exc:
            if getattr(exc, "keep_changes", False):
                await session.commit()
            else:
                await session.rollback()
            raise
