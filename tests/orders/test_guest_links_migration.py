"""Migration 20261201_guest_links on a database with guest top-ups already waiting for
their payment: each gets the number's line and owner (the owner the guest confirmed a
moment before), so a payment that lands after the upgrade still credits them."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from openmvno.db import UTCDateTime
from openmvno.migrate import downgrade, upgrade
from tests.pg import PG_URL, fresh_pg_database

BEFORE = "20261125_ratelimit"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


async def _fresh_url(tmp_path: Path) -> str:
    if not PG_URL:
        return f"sqlite+aiosqlite:///{tmp_path / 'guest-links.db'}"
    name = f"openmvno_guestmig_{os.environ.get('OPENMVNO_TEST_DB_TAG', '')}{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')}"
    return await fresh_pg_database(name)


def _table(name: str, *uuids: str, times: tuple[str, ...] = ("created_at", "updated_at"),
           other: tuple[str, ...] = ()) -> sa.TableClause:
    return sa.table(name, *(sa.column(c, sa.Uuid()) for c in uuids),
                    *(sa.column(c, UTCDateTime()) for c in times),
                    *(sa.column(c) for c in other))


ACCOUNTS = _table("accounts", "id", other=("role", "name", "password_hash", "language",
                                           "failed_logins", "active"))
LINES = _table("lines", "id", "account_id", times=("created_at", "updated_at",
                                                   "state_changed_at"),
               other=("kind", "iccid", "msisdn", "state", "auto_renew"))
ORDERS = _table("orders", "id", "line_id", "credited_account_id",
                other=("number", "kind", "msisdn", "amount_minor", "currency", "description",
                       "idempotency_scope", "idempotency_key", "request_hash", "state",
                       "provisioning", "result"))


def _guest_order(number: str, msisdn: str, state: str) -> dict[str, object]:
    return {"id": uuid.uuid4(), "number": number, "kind": "guest_topup", "msisdn": msisdn,
            "amount_minor": 3000, "currency": "CNY", "description": "", "state": state,
            "idempotency_scope": f"guest:{msisdn}", "idempotency_key": number,
            "request_hash": "x", "provisioning": "not_needed", "result": "{}",
            "created_at": NOW, "updated_at": NOW}


async def _scenario(url: str) -> None:
    await upgrade(url, BEFORE)
    owner, line = uuid.uuid4(), uuid.uuid4()
    waiting = _guest_order("O1", "+8617100000001", "pending_payment")
    done = _guest_order("O2", "+8617100000001", "fulfilled")
    nobody = _guest_order("O3", "+8617199999999", "pending_payment")
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(sa.insert(ACCOUNTS).values(
            id=owner, role="subscriber", name="张三明", password_hash="x", language="zh-CN",
            failed_logins=0, active=True, created_at=NOW, updated_at=NOW))
        await conn.execute(sa.insert(LINES).values(
            id=line, account_id=owner, kind="sim", iccid="89860010000000000001",
            msisdn="+8617100000001", state="active", auto_renew=False, created_at=NOW,
            updated_at=NOW, state_changed_at=NOW))
        for row in (waiting, done, nobody):
            await conn.execute(sa.insert(ORDERS).values(**row))
    await upgrade(url)
    async with engine.connect() as conn:
        got = {
            r.number: (r.line_id, r.credited_account_id)
            for r in await conn.execute(sa.select(ORDERS.c.number, ORDERS.c.line_id,
                                                  ORDERS.c.credited_account_id))
        }
    await engine.dispose()
    assert got == {"O1": (line, owner), "O2": (None, None), "O3": (None, None)}
    await downgrade(url, BEFORE)  # and back: the columns go again, the orders stay
    await upgrade(url)


def test_waiting_guest_top_ups_keep_the_numbers_owner_through_the_upgrade(
    tmp_path: Path,
) -> None:
    asyncio.run(_scenario(asyncio.run(_fresh_url(tmp_path))))
