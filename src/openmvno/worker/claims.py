"""Claiming due work: one statement per batch, safe with any number of workers.

``claim_due`` is the one way scheduled jobs take rows::

    WITH picked AS MATERIALIZED (SELECT id FROM t
                   WHERE <due> AND (claimed_until IS NULL OR claimed_until < :now)
                   ORDER BY <order> LIMIT :n FOR UPDATE SKIP LOCKED)
    UPDATE t SET claimed_until = :now + :lease WHERE id IN (SELECT id FROM picked)
    RETURNING <columns>

On PostgreSQL two workers never get the same row: the inner ``SKIP LOCKED`` passes
over rows another transaction is claiming, and the lease (``claimed_until``) keeps a
claimed row away from the others until the lease runs out (a worker killed mid-batch
leaves its rows to be claimed again once the lease passes). SQLite has one writer at a
time, so the statement is already exclusive there (``FOR UPDATE`` is not emitted).

A claim is a promise, not a lock: every effect of handling a row must still be keyed
by a UNIQUE key or a conditional UPDATE, so a row handled twice (lease expired under a
slow worker, crash after the effects but before the release) changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Row, Select, Table, Update, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from openmvno import clock

M = TypeVar("M")


def _table(target: Any) -> Table:
    if isinstance(target, Table):
        return target
    table = target.__table__
    assert isinstance(table, Table)
    return table


async def claim_due(
    session: AsyncSession,
    table: Table | type[DeclarativeBase] | Any,
    due_clause: ColumnElement[bool],
    order_by: Sequence[Any],
    limit: int,
    lease: timedelta,
    *,
    columns: Sequence[Any] | None = None,
    claim_column: str = "claimed_until",
    now: datetime | None = None,
    extra_values: dict[str, Any] | None = None,
) -> list[Row[Any]]:
    """Claim up to ``limit`` rows of ``table`` matching ``due_clause`` that nobody holds,
    for ``lease``; returns the claimed rows (``columns``, default every column) in one
    statement — in no set order: ``order_by`` chooses which rows are claimed, but
    ``UPDATE … RETURNING`` keeps no order (sort them where order matters).
    ``claim_column`` names the lease column (``claimed_until``); ``extra_values`` are set
    on the claimed rows in the same statement (e.g. an attempt counter). Commit soon
    after: on PostgreSQL the rows stay locked until then."""
    t = _table(table)
    statement = _claim(t, t, due_clause, order_by, limit, lease, claim_column, now, extra_values)
    returned = statement.returning(*(columns if columns is not None else t.c))
    return list((await session.execute(returned)).all())


async def claim_due_objects(
    session: AsyncSession,
    model: type[M],
    due_clause: ColumnElement[bool],
    order_by: Sequence[Any],
    limit: int,
    lease: timedelta,
    *,
    claim_column: str = "claimed_until",
    now: datetime | None = None,
    extra_values: dict[str, Any] | None = None,
) -> list[M]:
    """:func:`claim_due` for a mapped class: the claimed rows as ORM objects (in no set
    order)."""
    t = _table(model)
    statement = _claim(
        model, t, due_clause, order_by, limit, lease, claim_column, now, extra_values
    )
    found = await session.scalars(statement.returning(model))
    return list(found.all())


def _claim(
    target: Any,
    t: Table,
    due_clause: ColumnElement[bool],
    order_by: Sequence[Any],
    limit: int,
    lease: timedelta,
    claim_column: str,
    now: datetime | None,
    extra_values: dict[str, Any] | None,
) -> Update:
    now = now or clock.now()
    lease_col = t.c[claim_column]
    inner = (
        select(t.c.id)
        .where(due_clause, or_(lease_col.is_(None), lease_col < now))
        .order_by(*order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    values: dict[str, Any] = {claim_column: now + lease, **(extra_values or {})}
    return (
        update(target)
        .where(t.c.id.in_(_picked_once(inner)))
        .values(values)
        .execution_options(synchronize_session=False)
    )


def _picked_once(inner: Select[Any]) -> Select[Any]:
    """The ids ``inner`` picks, picked once: ``inner`` as a MATERIALIZED CTE on PostgreSQL.
    As a plain ``IN (subquery)`` the planner may join it as the inner side of a nested
    loop and run it again for every row of the outer scan — each run locking further
    rows past the ones it skipped — so one claim took every due row, not ``limit`` (seen
    once the table's statistics said it was nearly empty)."""
    picked = inner.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
    return select(picked.c.id)


async def update_due(
    session: AsyncSession,
    table: Table | type[DeclarativeBase] | Any,
    due_clause: ColumnElement[bool],
    order_by: Sequence[Any],
    limit: int,
    values: dict[str, Any],
    *,
    returning: Sequence[Any],
) -> list[Row[Any]]:
    """Claim and change in one statement, for work done entirely in the database (the
    line lifecycle): up to ``limit`` rows matching ``due_clause`` that no other
    transaction holds get ``values``, and the changed rows come back. Called inside the
    unit of work that writes the move's other effects, so a crash undoes all of it and
    the rows are simply due again (no lease to wait for)::

        WITH picked AS MATERIALIZED (SELECT id FROM t WHERE <due> ORDER BY … LIMIT n
                                     FOR UPDATE SKIP LOCKED)
        UPDATE t SET <values> WHERE id IN (SELECT id FROM picked) AND <due>
        RETURNING …

    ``due_clause`` is checked again by the outer statement, so a row changed in between
    (a payment that renewed the line) is left alone."""
    t = _table(table)
    inner = (
        select(t.c.id).where(due_clause).order_by(*order_by).limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(t)
        .where(t.c.id.in_(_picked_once(inner)), due_clause)
        .values(values)
        .returning(*returning)
        .execution_options(synchronize_session=False)
    )
    return list((await session.execute(statement)).all())


async def release(
    session: AsyncSession,
    table: Table | type[DeclarativeBase] | Any,
    ids: Sequence[Any],
    *,
    claim_column: str = "claimed_until",
) -> None:
    """Give claimed rows back at once (instead of waiting for the lease to pass)."""
    if not ids:
        return
    t = _table(table)
    await session.execute(
        update(t)
        .where(t.c.id.in_(list(ids)))
        .values({claim_column: None})
        .execution_options(synchronize_session=False)
    )


__all__ = ["claim_due", "claim_due_objects", "release", "update_due"]
