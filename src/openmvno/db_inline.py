"""SQLite reads run inline on the event loop, for the read-only pool (see ``db``).

aiosqlite runs every call (cursor, execute, fetch, close) on a thread of its own and
hands the result back to the event loop: four thread round trips per statement, which
cost more CPU than a small indexed read of a local file does. The readers' connections
are plain ``sqlite3`` connections behind the few awaitable methods SQLAlchemy's aiosqlite
dialect calls, each finishing at once.

Only for readers: in WAL mode a reader never waits for a writer, so nothing here blocks
the loop longer than the query itself takes (keep reads small and indexed, as they are).
Writers keep aiosqlite, whose ``BEGIN IMMEDIATE`` may wait for the write lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine
from typing import Any

READER_BUSY_TIMEOUT_MS = 5000
"""A WAL reader waits only in rare cases (another process recovering the WAL after a
crash); then at most this long, holding the event loop."""


class Cursor:
    """The awaitable cursor surface SQLAlchemy's aiosqlite adapter uses."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Any) -> Cursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class Connection:
    """The awaitable connection surface SQLAlchemy's aiosqlite adapter uses (it tests
    ``_connection`` to know whether the connection is still open)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = conn

    @property
    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._open.isolation_level

    def cursor(self) -> Cursor:
        return Cursor(self._open.cursor())

    async def commit(self) -> None:
        self._open.commit()

    async def rollback(self) -> None:
        self._open.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._open.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def reader_connector(path: str) -> Callable[[], Coroutine[Any, Any, Connection]]:
    """An ``async_creator`` for ``create_async_engine``: a read-only connection to the
    database file at ``path`` (WAL, foreign keys, ``query_only``; autocommit, so a read is
    its statements and nothing else)."""

    async def connect() -> Connection:
        conn = sqlite3.connect(
            path,
            timeout=READER_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # autocommit: no BEGIN/COMMIT around reads
            check_same_thread=False,  # the pool may close it from another thread
        )
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={READER_BUSY_TIMEOUT_MS}",
            "PRAGMA query_only=ON",
        ):
            conn.execute(pragma).close()
        return Connection(conn)

    return connect
