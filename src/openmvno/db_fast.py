"""Hot reads straight on the driver: a Core SELECT compiled once per dialect, executed
on the session's own driver connection, its values converted by SQLAlchemy's own type
processors.

For the few reads made on nearly every request (the bearer token, a line's balance)
SQLAlchemy's per-execution machinery (result metadata, the greenlet hop, cursor
wrappers) costs several times what the database does. A :class:`FastSelect` keeps the
statement as the one source of truth (written in Core like every other query) and skips
only that machinery: the SQL string, the parameter order and the bind and result
processors are taken from the compiled statement once.

Only on the read-only pool (a reader runs no transaction of its own: SQLite readers are
autocommit ``sqlite3`` connections run inline, PostgreSQL readers are autocommit
read-only asyncpg connections), and only while nobody listens to the engine's statement
events; otherwise (a writer's connection, a test counting statements) it runs through
``execute``, so the answer and the statements are the same everywhere.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import Select

from openmvno import db_inline

Processor = Callable[[Any], Any] | None
_DRIVER = "openmvno.db_fast.driver"
"""``session.info`` key: (transaction, connection, pool entry) of the session."""


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    names: tuple[str, ...]
    binds: tuple[Processor, ...]
    results: tuple[Processor, ...]
    row: Any


async def _session_driver(session: AsyncSession) -> tuple[AsyncConnection, Any]:
    # Each hop through SQLAlchemy's async layer costs: look the connection up once per
    # transaction of the session (a new transaction may hold another connection).
    found = session.info.get(_DRIVER)
    transaction = session.sync_session.get_transaction()
    if found is None or transaction is None or found[0] is not transaction:
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        found = session.info[_DRIVER] = (session.sync_session.get_transaction(), conn, raw)
    return found[1], found[2]


class FastSelect:
    """A SELECT run on the driver connection of a read-only session (see module doc).

    Rows come back as named tuples, read by attribute like SQLAlchemy rows."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._plans: dict[str, _Plan] = {}

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            compiled = self.statement.compile(dialect=dialect)
            names = tuple(compiled.positiontup or ())
            columns = compiled._result_columns
            plan = _Plan(
                sql=compiled.string,
                names=names,
                binds=tuple(
                    compiled.binds[n].type._cached_bind_processor(dialect)
                    for n in names
                ),
                results=tuple(
                    c.type._cached_result_processor(dialect, None)
                    for c in columns
                ),
                row=namedtuple("FastRow", [c.keyname for c in columns], rename=True),
            )
            self._plans[dialect.name] = plan
        return plan

    async def all(
        self, source: AsyncSession | AsyncConnection, params: Mapping[str, Any]
    ) -> Sequence[Any]:
        """Every row for ``params`` (each named bind parameter of the statement), read
        through ``source``: a session, or a connection of :func:`openmvno.db.read_connection`."""
        if isinstance(source, AsyncConnection):
            conn = source
            sync_conn = conn.sync_connection
            fairy = sync_conn._dbapi_connection if sync_conn is not None else None
            raw = fairy if fairy is not None else await conn.get_raw_connection()
        else:
            conn, raw = await _session_driver(source)
        driver: Any = raw.driver_connection
        dialect = conn.dialect
        plan = self._plan(dialect)
        args = [
            value if proc is None else proc(value)
            for proc, value in zip(plan.binds, (params[n] for n in plan.names), strict=True)
        ]
        sync = conn.sync_connection
        observed = sync is None or sync._has_events or sync.engine._has_events
        if observed:  # someone listens to the statements (tests counting them): let them see
            result = await conn.execute(self.statement, dict(params))
            return list(result.all())
        if isinstance(driver, db_inline.Connection):
            cursor: sqlite3.Cursor = driver._open.execute(plan.sql, args)
            try:
                fetched = cursor.fetchall()
            finally:
                cursor.close()
        elif dialect.driver == "asyncpg" and getattr(raw.dbapi_connection, "autocommit", False):
            fetched = await driver.fetch(plan.sql, *args)
        else:
            result = await conn.execute(self.statement, dict(params))
            return list(result.all())
        make = plan.row._make
        procs = plan.results
        return [
            make([v if p is None else p(v) for p, v in zip(procs, r, strict=True)])
            for r in fetched
        ]

