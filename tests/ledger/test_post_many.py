"""Set-based posting: a batch of usage records in one INSERT, duplicates dropped."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from openmvno.db import unit_of_work
from openmvno.errors import NotFound
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BalanceEntry, Bucket, EntryReason
from openmvno.ledger.service import Posting
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.ledger.helpers import GB, MB, books, make_account, make_line, make_plan

USAGE = EntryReason.usage


async def _buckets(rt: Runtime, frozen: FrozenClock) -> list[Bucket]:
    async with unit_of_work(rt.sessions) as s:
        li = await make_account(s, "Li Lei")
        m30 = await make_plan(s, "M30")
        line = await make_line(s, li)
        return await ledger.grant_plan(
            s, account_id=li.id, line_id=line.id, plan=m30, order_id=None,
            valid_from=frozen.now, valid_until=frozen.now + timedelta(days=30), key="buy",
        )


async def test_a_batch_with_repeats_charges_each_record_once(
    rt: Runtime, frozen: FrozenClock
) -> None:
    data, voice, sms = await _buckets(rt, frozen)
    acc = data.account_id
    first = [Posting(data.id, acc, -MB, USAGE, f"cdr-{i}") for i in range(600)]
    first += [Posting(voice.id, acc, -60, USAGE, f"call-{i}") for i in range(30)]
    first += [Posting(sms.id, acc, -1, USAGE, f"sms-{i}") for i in range(5)]
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.post_many(s, first + first[:100]) == 635  # in-batch repeats dropped

    # The peer resends the last 300 records together with 200 new ones.
    again = first[300:600] + [Posting(data.id, acc, -MB, USAGE, f"cdr-{i}") for i in range(600, 800)]
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.post_many(s, again) == 200
        assert await ledger.post_many(s, []) == 0
    assert await books(rt) == {
        "M30 data until 12-25": 10 * GB - 800 * MB,
        "M30 voice until 12-25": 6000 - 30 * 60,
        "M30 sms until 12-25": 45,
    }


async def test_a_batch_that_overdraws_one_bucket_leaves_nothing_behind(
    rt: Runtime, frozen: FrozenClock
) -> None:
    data, _voice, sms = await _buckets(rt, frozen)
    acc = data.account_id
    batch = [Posting(data.id, acc, -GB, USAGE, "cdr-1"), Posting(sms.id, acc, -51, USAGE, "sms-1")]
    async with unit_of_work(rt.sessions) as s:
        with pytest.raises(ledger.InsufficientBalance):
            await ledger.post_many(s, batch)
        # The transaction is still usable: the good half can go on its own.
        assert await ledger.post_many(s, batch[:1]) == 1
        assert await s.scalar(select(func.count()).where(BalanceEntry.idempotency_key == "sms-1")) == 0
    assert await books(rt) == {
        "M30 data until 12-25": 9 * GB, "M30 voice until 12-25": 6000, "M30 sms until 12-25": 50,
    }


async def test_reserved_quota_cannot_be_spent_twice(rt: Runtime, frozen: FrozenClock) -> None:
    _data, _voice, sms = await _buckets(rt, frozen)
    async with unit_of_work(rt.sessions) as s:
        # A session elsewhere holds 20 SMS (the Gy reservation API comes later).
        await s.execute(update(Bucket).where(Bucket.id == sms.id).values(reserved=20))
    async with unit_of_work(rt.sessions) as s:
        with pytest.raises(ledger.InsufficientBalance):
            await ledger.post(
                s, bucket_id=sms.id, account_id=sms.account_id, delta=-31, reason=USAGE, key="a"
            )
        assert await ledger.post(
            s, bucket_id=sms.id, account_id=sms.account_id, delta=-30, reason=USAGE, key="b"
        )
    frozen.advance(days=31)
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.expire_due(s) == 2  # SMS: only the reserved 20 are left
    assert await books(rt) == {
        "M30 data until 12-25": 0, "M30 voice until 12-25": 0, "M30 sms until 12-25": 20,
    }


async def test_posting_to_someone_elses_bucket_is_not_found(
    rt: Runtime, frozen: FrozenClock
) -> None:
    data, *_ = await _buckets(rt, frozen)
    async with unit_of_work(rt.sessions) as s:
        stranger = await make_account(s, "Stranger")
        with pytest.raises(NotFound):
            await ledger.post(
                s, bucket_id=data.id, account_id=stranger.id, delta=GB, reason=USAGE, key="x"
            )
        assert await s.scalar(select(func.count()).where(BalanceEntry.idempotency_key == "x")) == 0
