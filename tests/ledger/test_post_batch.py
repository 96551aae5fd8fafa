"""``ledger.batch.post_batch``: a batch charged record by record in three statements,
whatever its size; what cannot be covered is refused (or taken as far as it goes)
without undoing the rest; a replay is all duplicates; concurrent batches never
overdraw and never deadlock."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select
from sqlalchemy.exc import DBAPIError

from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.batch import Applied, BatchRace, post_batch, post_locked
from openmvno.ledger.models import BalanceEntry, Bucket, EntryReason
from openmvno.ledger.service import Posting
from openmvno.runtime import Runtime
from tests.ledger.helpers import books, make_account

CNY = "CNY"
USAGE = EntryReason.usage


async def _wallets(rt: Runtime, *amounts: int) -> list[Bucket]:
    """One account per amount, each with a wallet holding it."""
    out = []
    async with unit_of_work(rt.sessions) as s:
        for i, amount in enumerate(amounts):
            account = await make_account(s, f"Subscriber {i}")
            w = await ledger.wallet(s, account_id=account.id, currency=CNY)
            if amount:
                await ledger.credit_wallet(
                    s, account_id=account.id, currency=CNY, amount_minor=amount,
                    reason=EntryReason.topup, key=f"topup-{account.id}",
                )
            out.append(w)
    return out


def _debit(w: Bucket, amount: int, key: str) -> Posting:
    return Posting(w.id, w.account_id, -amount, USAGE, key)


def _credit(w: Bucket, amount: int, key: str) -> Posting:
    return Posting(w.id, w.account_id, amount, EntryReason.topup, key)


def _statuses(out: list[Applied]) -> list[tuple[str, int, str]]:
    return [(a.key, a.applied, a.status) for a in out]


async def test_debits_are_taken_in_order_and_a_short_one_sinks_nothing_else(
    rt: Runtime,
) -> None:
    (w,) = await _wallets(rt, 100)
    batch = [
        _debit(w, 30, "a"),  # 100 -> 70
        _debit(w, 80, "b"),  # cannot: refused, nothing of it written
        _debit(w, 50, "c"),  # 70 -> 20
        _credit(w, 15, "d"),  # 20 -> 35
        _debit(w, 35, "e"),  # 35 -> 0
        _debit(w, 1, "f"),  # empty: refused
        _debit(w, 5, "a"),  # the key is taken: duplicate
    ]
    async with unit_of_work(rt.sessions) as s:
        out = await post_batch(s, batch)
        assert (await ledger.wallet(s, account_id=w.account_id, currency=CNY)).remaining == 0
    assert _statuses(out) == [
        ("a", -30, "applied"), ("b", 0, "refused"), ("c", -50, "applied"),
        ("d", 15, "applied"), ("e", -35, "applied"), ("f", 0, "refused"),
        ("a", 0, "duplicate"),
    ]
    assert [(a.asked, a.bucket_id) for a in out] == [(p.delta, w.id) for p in batch]
    assert await books(rt) == {"Subscriber 0 wallet CNY": 0}
    async with unit_of_work(rt.sessions) as s:
        keys = set(await s.scalars(select(BalanceEntry.idempotency_key)))
    assert keys == {f"topup-{w.account_id}", "a", "c", "d", "e"}  # refused postings left no entry


async def test_partial_takes_what_is_there_and_respects_the_reservation(rt: Runtime) -> None:
    w, other = await _wallets(rt, 100, 10)
    async with unit_of_work(rt.sessions) as s:
        # A session holds 20 of it (Diameter reservation): only 80 can be charged.
        bucket = await s.get(Bucket, w.id)
        assert bucket is not None
        bucket.reserved = 20
    batch = [
        _debit(w, 50, "u1"), _debit(w, 50, "u2"), _debit(w, 50, "u3"),
        _debit(other, 4, "o1"), Posting(uuid.uuid4(), w.account_id, -1, USAGE, "ghost"),
    ]
    async with unit_of_work(rt.sessions) as s:
        out = await post_batch(s, batch, partial=True)
    assert _statuses(out) == [
        ("u1", -50, "applied"), ("u2", -30, "partial"), ("u3", 0, "refused"),
        ("o1", -4, "applied"), ("ghost", 0, "refused"),
    ]
    assert await books(rt) == {"Subscriber 0 wallet CNY": 20, "Subscriber 1 wallet CNY": 6}


async def test_a_replayed_batch_is_all_duplicates_and_changes_nothing(rt: Runtime) -> None:
    w, v = await _wallets(rt, 1000, 0)
    batch = [_debit(w, 7, f"cdr-{i}") for i in range(100)] + [_credit(v, 3, "gift")]
    async with unit_of_work(rt.sessions) as s:
        first = await post_batch(s, batch)
    assert {a.status for a in first} == {"applied"}
    async with unit_of_work(rt.sessions) as s:
        again = await post_batch(s, batch)
    assert [(a.key, a.status, a.applied) for a in again] == [
        (p.key, "duplicate", 0) for p in batch
    ]
    assert await books(rt) == {"Subscriber 0 wallet CNY": 300, "Subscriber 1 wallet CNY": 3}


@contextmanager
def _counting(rt: Runtime) -> Iterator[list[str]]:
    seen: list[str] = []

    def on_execute(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = rt.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)


async def test_the_same_few_statements_for_ten_postings_or_a_thousand(rt: Runtime) -> None:
    wallets = await _wallets(rt, *([10_000] * 20))
    counts = []
    for size in (10, 1000):
        batch = [
            _debit(wallets[i % len(wallets)], 3, f"{size}-{i}") for i in range(size)
        ] + [_debit(wallets[0], 1_000_000, f"{size}-too-much")]
        async with unit_of_work(rt.sessions) as s:
            await s.connection()  # BEGIN (and SQLite's pragmas) outside the count
            with _counting(rt) as seen:
                out = await post_batch(s, batch)
        assert [a.status for a in out] == ["applied"] * size + ["refused"]
        counts.append(len(seen))
    assert counts == [3, 3]  # lock the buckets, find known keys, insert the entries
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.check(s) == []


def _model(
    balances: dict[int, int], ops: list[tuple[int, int, int]], partial: bool, seen: set[int]
) -> list[tuple[int, str]]:
    """A few lines of the rules: (applied, status) per op (bucket, delta, key)."""
    out = []
    for bucket, delta, key in ops:
        if key in seen:
            out.append((0, "duplicate"))
            continue
        if delta < 0 and -delta > balances[bucket]:
            if not partial or balances[bucket] == 0:
                out.append((0, "refused"))
                continue
            applied, status = -balances[bucket], "partial"
        else:
            applied, status = delta, "applied"
        balances[bucket] += applied
        seen.add(key)
        out.append((applied, status))
    return out


OPS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(-60, 40), st.integers(0, 80)), max_size=40
)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(st.tuples(OPS, st.booleans()), min_size=1, max_size=4))
async def test_random_batches_keep_the_books_and_match_the_model(
    rt: Runtime, batches: list[tuple[list[tuple[int, int, int]], bool]]
) -> None:
    run = uuid.uuid4().hex[:8]
    wallets = await _wallets(rt, 50, 0, 120)
    balances = {0: 50, 1: 0, 2: 120}
    seen: set[int] = set()
    for ops, partial in batches:
        expected = _model(balances, ops, partial, seen)
        postings = [
            Posting(wallets[b].id, wallets[b].account_id, d, USAGE, f"{run}-{k}")
            for b, d, k in ops
        ]
        async with unit_of_work(rt.sessions) as s:
            out = await post_batch(s, postings, partial=partial)
        assert [(a.applied, a.status) for a in out] == expected
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.check(s) == []
        for i, w in enumerate(wallets):
            assert (await s.get(Bucket, w.id, populate_existing=True)).remaining == balances[i]  # type: ignore[union-attr]


async def test_many_connections_charging_the_same_buckets_never_overdraw_or_deadlock(
    rt: Runtime,
) -> None:
    """Twenty batches at once (PostgreSQL: as many connections as the pool gives; SQLite
    queues them), each over the same three wallets in its own shuffled order."""
    initial = [3000, 1000, 500]
    wallets = await _wallets(rt, *initial)
    rng = random.Random(7)
    batches = []
    for b in range(20):
        batch = [
            _debit(wallets[rng.randrange(3)], rng.randint(1, 40), f"b{b}-{i}") for i in range(60)
        ]
        rng.shuffle(batch)
        batches.append(batch)

    async def charge(batch: list[Posting]) -> list[Applied]:
        async with unit_of_work(rt.sessions) as s:
            return await post_batch(s, batch, partial=True)

    results = await asyncio.gather(*(charge(b) for b in batches))
    taken = {w.id: 0 for w in wallets}
    for out in results:
        for a in out:
            assert a.status in ("applied", "partial", "refused")
            taken[a.bucket_id] += -a.applied
    after = await books(rt)
    for i, w in enumerate(wallets):
        assert after[f"Subscriber {i} wallet CNY"] == initial[i] - taken[w.id] >= 0
    async with unit_of_work(rt.sessions) as s:
        entries = await s.scalar(select(func.count()).select_from(BalanceEntry))
    assert entries == 3 + sum(1 for out in results for a in out if a.applied)


async def test_post_locked_is_one_insert_and_the_database_still_refuses_an_overdraft(
    rt: Runtime,
) -> None:
    """``post_locked`` (a usage batch's entries on buckets it locked itself): one statement;
    a debit beyond a balance still fails it whole (the buckets' CHECK), an entry naming a
    bucket of another account too, and a key posted before raises BatchRace."""
    a, b = await _wallets(rt, 500, 300)
    async with unit_of_work(rt.sessions) as s:
        await s.connection()
        with _counting(rt) as seen:
            await post_locked(
                s, bucket_ids=[a.id, str(b.id)], account_ids=[str(a.account_id), b.account_id],
                deltas=[-200, -300], keys=["locked-1", "locked-2"], reason=USAGE, memo="usage",
            )
        assert len(seen) == 1
    assert await books(rt) == {"Subscriber 0 wallet CNY": 300, "Subscriber 1 wallet CNY": 0}
    with pytest.raises(DBAPIError):
        async with unit_of_work(rt.sessions) as s:
            await post_locked(s, bucket_ids=[a.id], account_ids=[a.account_id], deltas=[-301],
                              keys=["locked-3"], reason=USAGE)
    with pytest.raises(DBAPIError):
        async with unit_of_work(rt.sessions) as s:
            await post_locked(s, bucket_ids=[a.id], account_ids=[b.account_id], deltas=[-1],
                              keys=["locked-4"], reason=USAGE)
    with pytest.raises(BatchRace):
        async with unit_of_work(rt.sessions) as s:
            await post_locked(s, bucket_ids=[a.id, a.id], account_ids=[a.account_id] * 2,
                              deltas=[-1, -1], keys=["locked-5", "locked-1"], reason=USAGE)
    assert await books(rt) == {"Subscriber 0 wallet CNY": 300, "Subscriber 1 wallet CNY": 0}
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.check(s) == []
        keys = set((await s.scalars(select(BalanceEntry.idempotency_key))).all())
    assert {"locked-1", "locked-2"} <= keys
    assert not {"locked-3", "locked-4", "locked-5"} & keys
