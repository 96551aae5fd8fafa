"""Reads are fast and never write: GET and HEAD run in one read-only transaction (no write
lock; any write refused) and the hot reads take a fixed number of statements however many
lines, buckets or orders there are."""

from __future__ import annotations

import asyncio
import gc
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from openmvno import db
from openmvno.accounts.models import Account, AuthToken, TokenKind
from openmvno.app import create_app
from openmvno.db import make_engine, make_sessionmaker, unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import Bucket, BucketKind, EntryReason
from openmvno.orders.models import OrderKind
from openmvno.payments.models import AttemptState, PaymentAttempt, PaymentMethodKind
from openmvno.runtime import Runtime, build_runtime
from openmvno.web.deps import Session
from tests.conftest import FrozenClock, register_and_login
from tests.ledger.helpers import GB, make_line, make_order, make_plan
from tests.portal.helpers import portal_login, register_verified

_BOOKKEEPING = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|PRAGMA|SAVEPOINT|RELEASE)\b", re.I)


@dataclass
class Counted:
    statements: list[str] = field(default_factory=list)
    transactions: int = 0


def _engines(rt: Runtime) -> list[Any]:
    """The writers' engine and the readers' (GET and HEAD run on the latter)."""
    reader = rt.sessions.readonly.kw["bind"]  # type: ignore[attr-defined]
    return list({id(e): e for e in (rt.engine.sync_engine, reader.sync_engine)}.values())


@contextmanager
def counting(rt: Runtime) -> Iterator[Counted]:
    """The SQL statements (not BEGIN/COMMIT/PRAGMA) and transactions run meanwhile."""
    seen = Counted()

    def on_execute(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if not _BOOKKEEPING.match(statement):
            seen.statements.append(statement)

    def on_begin(_conn: Any) -> None:
        seen.transactions += 1

    engines = _engines(rt)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", on_execute)
        event.listen(engine, "begin", on_begin)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", on_execute)
            event.remove(engine, "begin", on_begin)


async def _account_of(rt: Runtime, headers: dict[str, str]) -> uuid.UUID:
    async with unit_of_work(rt.sessions) as s:
        account_id = await s.scalar(select(Account.id).where(Account.phone == headers["X-Phone"]))
    assert account_id is not None
    return account_id


async def _give_lines(rt: Runtime, account_id: uuid.UUID, n: int, frozen: FrozenClock) -> list[uuid.UUID]:
    """``n`` active lines on a plan, each with its data, minutes and SMS, and a wallet."""
    ids = []
    async with unit_of_work(rt.sessions) as s:
        account = await s.get(Account, account_id)
        assert account is not None
        plan = await make_plan(s, f"P{uuid.uuid4().hex[:6]}")
        for i in range(n):
            line = await make_line(s, account, plan=plan, expires_at=frozen.now + timedelta(days=30))
            await ledger.grant_plan(
                s, account_id=account.id, line_id=line.id, plan=plan, order_id=None,
                valid_from=frozen.now, valid_until=frozen.now + timedelta(days=30), key=f"g{i}",
            )
            ids.append(line.id)
        await ledger.credit_wallet(
            s, account_id=account.id, currency="CNY", amount_minor=500,
            reason=EntryReason.topup, key=f"w-{account.id}",
        )
    return ids


# --- read-only transactions ---------------------------------------------------------------


async def test_a_read_only_transaction_refuses_writes_and_a_writer_after_it_still_writes(
    rt: Runtime,
) -> None:
    # One pooled connection, so the writer reuses the reader's connection.
    engine = make_engine(rt.settings.database_url, pool_size=1)
    sessions = make_sessionmaker(engine)

    async def add_in_a_read() -> None:
        async with unit_of_work(sessions, readonly=True) as s:
            s.add(Account(name="Reader", password_hash="!"))
            await s.flush()

    try:
        with pytest.raises(DBAPIError):
            await add_in_a_read()
        async with unit_of_work(sessions, readonly=True) as s:
            await s.commit()  # a commit ends the transaction, the next one is read-only too
            with pytest.raises(DBAPIError):
                await s.execute(update(Account).values(name="x"))
        async with unit_of_work(sessions) as s:
            s.add(Account(name="Writer", password_hash="!"))
        async with unit_of_work(sessions, readonly=True) as s:
            names = list(await s.scalars(select(Account.name)))
        assert names == ["Writer"]
    finally:
        await engine.dispose()


def _app_with_a_route_that_writes(rt: Runtime) -> FastAPI:
    app = create_app(runtime=rt)

    async def write(session: Session) -> dict[str, str]:
        session.add(Account(name="Written by a request", password_hash="!"))
        await session.flush()
        return {"status": "written"}

    app.add_api_route("/api/v1/test/write", write, methods=["GET", "POST"])
    return app


async def test_a_get_request_cannot_write_and_a_post_can(rt: Runtime) -> None:
    app = _app_with_a_route_that_writes(rt)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        r = await client.get("/api/v1/test/write")
        assert r.status_code == 500
        assert r.headers["content-type"].startswith("application/problem+json")
        async with unit_of_work(rt.sessions) as s:
            assert await s.scalar(select(func.count()).select_from(Account)) == 0
        r = await client.post("/api/v1/test/write")
        assert r.status_code == 200
        async with unit_of_work(rt.sessions) as s:
            assert await s.scalar(select(func.count()).select_from(Account)) == 1


async def test_a_balance_read_is_answered_while_a_writer_holds_the_database(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    """On SQLite reads used to take the single write lock too and waited behind writers."""
    headers = await register_and_login(client)
    account_id = await _account_of(rt, headers)
    (line_id,) = await _give_lines(rt, account_id, 1, frozen)
    async with unit_of_work(rt.sessions) as writer:
        await writer.execute(
            update(Bucket).where(Bucket.account_id == account_id).values(priority=99)
        )  # the write lock (SQLite) / row locks (PostgreSQL) are now held until commit
        r = await asyncio.wait_for(
            client.get(f"/api/v1/lines/{line_id}/balance", headers=headers), timeout=10
        )
        assert r.status_code == 200, r.text
        assert r.json()["wallet"]["balance_minor"] == 500


async def test_visiting_my_account_creates_no_wallet(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """The portal created an empty wallet row when a page showed the balance."""
    await register_verified(client, phone="13800138170")
    await portal_login(client, "13800138170")
    r = await client.get("/account")
    assert r.status_code == 200
    assert "0.00" in r.text
    async with unit_of_work(rt.sessions) as s:
        wallets = await s.scalar(
            select(func.count()).select_from(Bucket).where(Bucket.kind == BucketKind.money)
        )
    assert wallets == 0


_FIRST_IMPORT = """
import asyncio, sys, uuid
from openmvno.ledger import service as ledger  # before any other model module
from openmvno.accounts import tokens
from openmvno.accounts.models import TokenKind
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.runtime import build_runtime

async def main() -> None:
    url, data_dir, token, line_id = sys.argv[1:]
    rt = build_runtime(Settings(environment="development", database_url=url, data_dir=data_dir))
    async with unit_of_work(rt.sessions, readonly=True) as s:
        me = await tokens.authenticate(s, token, TokenKind.access)
        view = await ledger.owned_line_balance(
            s, account_id=me.id, line_id=uuid.UUID(line_id), language="en")
        print(view.wallet.minor, len(view.buckets))
    await rt.close()

asyncio.run(main())
"""


async def test_auth_and_balance_work_in_a_process_that_imports_them_first(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock, tmp_path: Any
) -> None:
    """Their statements are built at import time, when a foreign key column's type may
    not be known yet (a served process answered every balance with a 500)."""
    frozen.now = datetime.now(UTC)  # the other process reads the real clock
    headers = await register_and_login(client)
    (line_id,) = await _give_lines(rt, await _account_of(rt, headers), 1, frozen)
    token = headers["Authorization"].removeprefix("Bearer ")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FIRST_IMPORT, rt.settings.database_url, str(tmp_path), token,
        str(line_id), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.decode().split() == ["500", "3"]


# --- statements per read -------------------------------------------------------------------


async def _count(client: httpx.AsyncClient, rt: Runtime, url: str, headers: dict[str, str]) -> Counted:
    with counting(rt) as seen:
        r = await client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    return seen


async def _my_line_balance(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> tuple[dict[str, str], uuid.UUID, uuid.UUID, str]:
    """A subscriber logged in with one line: headers, account, line, its balance URL."""
    headers = await register_and_login(client)
    account_id = await _account_of(rt, headers)
    (line_id,) = await _give_lines(rt, account_id, 1, frozen)
    return headers, account_id, line_id, f"/api/v1/lines/{line_id}/balance"


async def test_balance_is_one_statement_in_one_transaction_whatever_it_holds(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    headers, account_id, line_id, url = await _my_line_balance(client, rt, frozen)
    small = await _count(client, rt, url, headers)
    async with unit_of_work(rt.sessions) as s:  # add-ons: 3 buckets become 9
        addon = await make_plan(s, "ADD", data_bytes=GB)
        for i in range(2):
            await ledger.grant_plan(
                s, account_id=account_id, line_id=line_id, plan=addon, order_id=None,
                valid_from=frozen.now, valid_until=frozen.now + timedelta(days=7), key=f"a{i}",
            )
    big = await _count(client, rt, url, headers)
    r = await client.get(url, headers=headers)
    assert len(r.json()["buckets"]) == 9
    assert len(small.statements) == len(big.statements) == 1  # the token checked inside
    assert small.transactions == big.transactions == 1


async def test_the_one_statement_balance_refuses_every_token_authenticate_refuses(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    headers, account_id, _, url = await _my_line_balance(client, rt, frozen)
    assert (await client.get(url, headers=headers)).status_code == 200
    tokens_table = AuthToken.__table__
    async with unit_of_work(rt.sessions) as s:  # the account switched off
        await s.execute(update(Account).where(Account.id == account_id).values(active=False))
    r = await client.get(url, headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")
    async with unit_of_work(rt.sessions) as s:  # on again, but its access token revoked
        await s.execute(update(Account).where(Account.id == account_id).values(active=True))
        await s.execute(update(tokens_table).where(
            tokens_table.c.account_id == account_id, tokens_table.c.kind == TokenKind.access
        ).values(revoked_at=frozen.now))
    r = await client.get(url, headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")
    r = await client.post("/api/v1/auth/token",
                          json={"login": headers["X-Phone"], "password": "Harbour-Lights-2026"})
    fresh = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await client.get(url, headers=fresh)).status_code == 200
    frozen.advance(days=2)  # an access token lives minutes, not days
    r = await client.get(url, headers=fresh)
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")


async def test_my_lines_takes_the_same_statements_for_one_line_or_five(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    one, five = await register_and_login(client), await register_and_login(client)
    await _give_lines(rt, await _account_of(rt, one), 1, frozen)
    await _give_lines(rt, await _account_of(rt, five), 5, frozen)
    a = await _count(client, rt, "/api/v1/me/lines", one)
    b = await _count(client, rt, "/api/v1/me/lines", five)
    assert len((await client.get("/api/v1/me/lines", headers=five)).json()) == 5
    assert len(a.statements) == len(b.statements) == 2
    assert a.transactions == b.transactions == 1


async def test_my_orders_takes_the_same_statements_for_one_order_or_five(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    one, five = await register_and_login(client), await register_and_login(client)
    for headers, n in ((one, 1), (five, 5)):
        account_id = await _account_of(rt, headers)
        async with unit_of_work(rt.sessions) as s:
            account = await s.get(Account, account_id)
            assert account is not None
            for _ in range(n):
                order = await make_order(s, account, kind=OrderKind.topup)
                s.add(PaymentAttempt(
                    order_id=order.id, account_id=account.id, method=PaymentMethodKind.alipay,
                    provider="sandbox", state=AttemptState.failed,
                    amount_minor=order.amount_minor, currency="CNY",
                ))
    a = await _count(client, rt, "/api/v1/orders", one)
    b = await _count(client, rt, "/api/v1/orders", five)
    page = (await client.get("/api/v1/orders", headers=five)).json()
    assert page["total"] == 5 and all(len(o["payments"]) == 1 for o in page["items"])
    assert len(a.statements) == len(b.statements) <= 4  # token, page, count, attempts
    assert a.transactions == b.transactions == 1


async def test_the_plans_list_is_one_statement_for_one_plan_or_five(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    async with unit_of_work(rt.sessions) as s:
        await make_plan(s, "ONE")
    a = await _count(client, rt, "/api/v1/plans", {})
    async with unit_of_work(rt.sessions) as s:
        for i in range(4):
            await make_plan(s, f"MORE{i}")
    b = await _count(client, rt, "/api/v1/plans", {})
    assert len((await client.get("/api/v1/plans")).json()) == 5
    assert len(a.statements) == len(b.statements) == 1


async def test_my_account_page_takes_the_same_statements_for_one_line_or_five(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    """It ran four queries per line."""
    counts = []
    for phone, n in (("13800138171", 1), ("13800138172", 5)):
        client.cookies.clear()
        await register_verified(client, phone=phone)
        await portal_login(client, phone)
        async with unit_of_work(rt.sessions) as s:
            account_id = await s.scalar(select(Account.id).where(Account.phone == "+86" + phone))
        assert account_id is not None
        await _give_lines(rt, account_id, n, frozen)
        seen = await _count(client, rt, "/account", {})
        counts.append(len(seen.statements))
        assert seen.transactions == 1
    assert counts[0] == counts[1]


async def test_a_pooled_connection_the_server_dropped_while_idle_is_replaced(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ping on every checkout any more; one idle past the limit is pinged first."""
    if not rt.settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to drop connections")
    headers = await register_and_login(client)
    (line_id,) = await _give_lines(rt, await _account_of(rt, headers), 1, frozen)
    url = f"/api/v1/lines/{line_id}/balance"
    assert (await client.get(url, headers=headers)).status_code == 200  # pools now hold one
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)
    admin = create_async_engine(rt.settings.database_url)
    try:
        async with admin.connect() as conn:  # the server ends every other session
            await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ))
    finally:
        await admin.dispose()
    r = await client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    r = await client.post(  # a writer too (its wrong try is counted)
        "/api/v1/devices/bind", json={"serial": "NO-SUCH", "secret": "000000"}, headers=headers
    )
    assert r.status_code < 500, r.text


async def test_a_served_app_keeps_its_start_up_objects_out_of_full_collections(
    settings: Any,
) -> None:
    """A full pass over everything start-up built paused every request for ~110 ms."""
    gc.unfreeze()
    app = create_app(settings)  # its own runtime, as `serve` builds it
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
    shared = create_app(runtime=build_runtime(settings))  # tests share a runtime: left alone
    async with shared.router.lifespan_context(shared):
        assert gc.get_freeze_count() == 0
    await shared.state.runtime.close()


async def test_a_request_needs_one_reader_connection_at_most(rt: Runtime) -> None:
    """The read-only pool has no overflow (connections are kept, never opened and closed
    per burst): a GET that held its own reader and asked for a second would wait for
    the pool forever once as many such requests ran at once. With a pool of one, the
    card list (which also finishes open card setups) still answers."""
    runtime = build_runtime(rt.settings.model_copy(update={"db_pool_size": 1}))
    try:
        app = create_app(runtime=runtime)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://testserver") as c:
            headers = await register_and_login(c)
            r = await asyncio.wait_for(c.get("/api/v1/cards", headers=headers), timeout=20)
            assert r.status_code == 200, r.text
            assert r.json()["cards"] == []
    finally:
        await runtime.close()
