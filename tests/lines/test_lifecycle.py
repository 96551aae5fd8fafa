"""Expiry → grace → suspension → termination with the injected clock, through the real
worker round: line states, the network jobs, the notices (and their SMS text), bucket
expiry in the ledger, the wallet untouched, a payment restoring a lapsed line at once
(复机), the number's quarantine, and every move exactly once."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from openmvno.db import unit_of_work
from openmvno.ledger.models import BalanceEntry, Bucket, BucketKind, EntryReason
from openmvno.lines import lifecycle
from openmvno.lines.models import Line, LineEvent, LineState, NumberQuarantine, NumberState
from openmvno.notifications.models import Notice, OutboxKind, OutboxMessage, OutboxState
from openmvno.runtime import Runtime
from openmvno.worker import runner
from tests.conftest import FrozenClock
from tests.lines.helpers import iccid, load
from tests.orders.helpers import (
    fund_wallet,
    give_line,
    order,
    pay,
    seed_plans,
    subscriber,
    wallet_minor,
)


async def _line(rt: Runtime, line_id: uuid.UUID) -> Line:
    async with rt.sessions() as s:
        line = await s.get(Line, line_id)
        assert line is not None
        return line


async def _network(rt: Runtime, line_id: uuid.UUID) -> list[tuple[str, str]]:
    async with rt.sessions() as s:
        rows = await s.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.line_state)
            .order_by(OutboxMessage.created_at, OutboxMessage.dedupe_key)
        )
        return [(m.payload["action"], str(m.state)) for m in rows.all()
                if m.payload["line_id"] == str(line_id)]


LIFECYCLE_EVENTS = ("grace_started", "suspended", "restored", "terminated")


async def _notices(rt: Runtime, line_id: uuid.UUID) -> list[str]:
    """The line's lifecycle notices, in order (expiry reminders are NOTICES' own)."""
    async with rt.sessions() as s:
        rows = await s.scalars(
            select(Notice.event).where(Notice.line_id == line_id,
                                       Notice.event.in_(LIFECYCLE_EVENTS))
            .order_by(Notice.created_at)
        )
        return list(rows.all())


async def _sms(rt: Runtime, phone: str) -> list[str]:
    async with rt.sessions() as s:
        rows = await s.scalars(
            select(OutboxMessage.body).where(OutboxMessage.kind == OutboxKind.sms,
                                             OutboxMessage.recipient == phone)
            .order_by(OutboxMessage.created_at)
        )
        return list(rows.all())


async def _moves(rt: Runtime, line_id: uuid.UUID) -> list[tuple[str | None, str | None]]:
    async with rt.sessions() as s:
        rows = await s.execute(
            select(LineEvent.from_state, LineEvent.to_state)
            .where(LineEvent.line_id == line_id, LineEvent.event == "state")
            .order_by(LineEvent.at)
        )
        return [(a, b) for a, b in rows.all()]


async def _buy(client: httpx.AsyncClient, headers: dict[str, str], line_id: uuid.UUID) -> None:
    """Buy M30 for the line with the wallet (logging in again: time has moved)."""
    r = await client.post("/api/v1/auth/token", json={"login": headers["X-Phone"],
                                                      "password": "Harbour-Lights-2026"})
    assert r.status_code == 200, r.text
    headers = {**headers, "Authorization": f"Bearer {r.json()['access_token']}"}
    made = await order(client, headers, {"kind": "plan", "plan_code": "M30",
                                         "line_id": str(line_id)})
    assert made.status_code == 201, made.text
    o = made.json()
    r = await pay(client, headers, o["id"], "wallet")
    assert r.status_code == 201, r.text
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["state"] == "fulfilled", got


async def test_a_line_lapses_into_grace_and_suspension_and_a_payment_restores_it_at_once(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client, name="Li Lei")
    phone = headers["X-Phone"]
    line = await give_line(rt, me, state=LineState.inventory)
    await fund_wallet(rt, me, 12000)
    await _buy(client, headers, line.id)  # 50.00, 30 days, 10 GB
    assert await wallet_minor(rt, me) == 7000
    expiry = (await _line(rt, line.id)).expires_at
    assert expiry == frozen.now + timedelta(days=30)
    await runner.drain(rt)

    frozen.advance(days=30, minutes=-1)  # a minute before expiry nothing happens
    await runner.drain(rt)
    assert (await _line(rt, line.id)).state == LineState.active
    sms_before = len(await _sms(rt, phone))

    frozen.advance(minutes=2)
    await runner.drain(rt)
    got = await _line(rt, line.id)
    assert got.state == LineState.grace
    assert await _network(rt, line.id) == [("minimal", "sent")]
    assert await _notices(rt, line.id) == ["grace_started"]
    [text] = (await _sms(rt, phone))[sms_before:]
    # The grace ends 7 days after expiry, shown in the operator's zone (Asia/Shanghai).
    grace_end = (expiry + timedelta(days=7)).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    assert grace_end.strftime("%Y-%m-%d %H:%M") in text
    assert "Enjoy 30 days" in text and "50.00" in text
    async with rt.sessions() as s:
        expired = (await s.execute(
            select(Bucket.kind, Bucket.remaining, func.count(BalanceEntry.id))
            .join(BalanceEntry, BalanceEntry.bucket_id == Bucket.id)
            .where(Bucket.line_id == line.id, BalanceEntry.reason == EntryReason.expire)
            .group_by(Bucket.kind, Bucket.remaining)
        )).all()
    assert {(BucketKind(k), rem, n) for k, rem, n in expired} == {
        (BucketKind.data, 0, 1), (BucketKind.voice, 0, 1), (BucketKind.sms, 0, 1)}
    assert await wallet_minor(rt, me) == 7000  # the wallet never expires

    frozen.advance(days=7)
    await runner.drain(rt)
    assert (await _line(rt, line.id)).state == LineState.suspended
    assert await _network(rt, line.id) == [("minimal", "sent"), ("suspend", "sent")]
    assert await _notices(rt, line.id) == ["grace_started", "suspended"]

    await runner.drain(rt)  # nothing twice
    assert len(await _moves(rt, line.id)) == 3  # inventory→active, →grace, →suspended

    frozen.advance(days=3)
    await _buy(client, headers, line.id)  # 复机
    restored = await _line(rt, line.id)
    assert restored.state == LineState.active
    assert restored.expires_at == frozen.now + timedelta(days=30)  # from now: it had lapsed
    await runner.drain(rt)
    assert await _network(rt, line.id) == [
        ("minimal", "sent"), ("suspend", "sent"), ("restore", "sent")]
    assert await _notices(rt, line.id) == ["grace_started", "suspended", "restored"]
    assert await _moves(rt, line.id) == [
        ("inventory", "active"), ("active", "grace"), ("grace", "suspended"),
        ("suspended", "active")]
    assert await wallet_minor(rt, me) == 2000
    restored_sms = (await _sms(rt, phone))[-2:]
    assert any("working again" in t for t in restored_sms), restored_sms


async def test_a_payment_in_grace_restores_the_line_and_the_old_lapse_never_suspends_it(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me, expires_at=frozen.now - timedelta(minutes=1))
    async with unit_of_work(rt.sessions) as s:
        got = await s.get(Line, line.id)
        assert got is not None
        got.plan_id = (await s.execute(select(__import__(
            "openmvno.catalog.models", fromlist=["Plan"]).Plan.id))).scalars().first()
    await runner.drain(rt)
    assert (await _line(rt, line.id)).state == LineState.grace
    frozen.advance(seconds=1)  # the restore comes after the lapse, not at the same instant
    await fund_wallet(rt, me, 5000)
    await _buy(client, headers, line.id)
    assert (await _line(rt, line.id)).state == LineState.active
    frozen.advance(days=8)  # past the old grace end: the new plan runs, nothing lapses
    await runner.drain(rt)
    assert (await _line(rt, line.id)).state == LineState.active
    assert await _moves(rt, line.id) == [("active", "grace"), ("grace", "active")]
    assert [a for a, _ in await _network(rt, line.id)] == ["minimal", "restore"]


async def test_a_line_never_paid_is_terminated_and_its_number_comes_back_after_quarantine(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    _, me = await subscriber(client)
    line = await give_line(rt, me, expires_at=frozen.now + timedelta(hours=1))
    await fund_wallet(rt, me, 900)
    frozen.advance(days=7 + 30, hours=1, minutes=1)  # past expiry + grace + suspension
    await runner.drain(rt)  # one round after another: grace, suspended, terminated
    got = await _line(rt, line.id)
    assert got.state == LineState.terminated
    assert got.account_id == me and got.msisdn == line.msisdn  # kept for history
    # One round made all three moves at the same (frozen) instant: their times tie.
    assert sorted(await _moves(rt, line.id)) == [
        ("active", "grace"), ("grace", "suspended"), ("suspended", "terminated")]
    assert [a for a, _ in await _network(rt, line.id)] == ["minimal", "suspend", "terminate"]
    # No plan on the line: no grace notice (nothing to renew); the others are sent.
    assert sorted(await _notices(rt, line.id)) == ["suspended", "terminated"]
    assert await wallet_minor(rt, me) == 900  # the wallet stays the subscriber's
    async with rt.sessions() as s:
        held = await s.scalar(select(NumberQuarantine).where(NumberQuarantine.line_id == line.id))
    assert held is not None and held.state == NumberState.quarantined
    assert held.msisdn == line.msisdn
    assert held.available_at == frozen.now + timedelta(days=90)

    frozen.advance(days=89)
    await runner.drain(rt)
    assert (await _line(rt, line.id)).msisdn == line.msisdn
    frozen.advance(days=1)
    await runner.drain(rt)
    old = await _line(rt, line.id)
    assert old.msisdn == lifecycle.placeholder_number(line.id)
    assert old.state == LineState.terminated and old.iccid == line.iccid
    async with rt.sessions() as s:
        held = await s.scalar(select(NumberQuarantine).where(NumberQuarantine.line_id == line.id))
    assert held is not None and held.state == NumberState.available
    # New stock may carry the number again (the importer's duplicate check passes).
    from openmvno.catalog.imports import ImportRejected

    try:
        await load(rt, [f"sim,{iccid(777)},{line.msisdn},SIM-0777,,"])
    except ImportRejected as exc:  # pragma: no cover - says which row and why
        raise AssertionError(exc.errors) from exc
    async with rt.sessions() as s:
        reissued = await s.scalar(select(Line).where(Line.msisdn == line.msisdn))
    assert reissued is not None and reissued.state == LineState.inventory
    assert reissued.id != line.id


@pytest.mark.parametrize("grace_service", ["none", "minimal"])
async def test_grace_service_and_zero_grace_days(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock, grace_service: str
) -> None:
    _, me = await subscriber(client)
    rt.settings.grace_service = grace_service  # type: ignore[assignment]
    rt.settings.grace_days = 0
    line = await give_line(rt, me, expires_at=frozen.now - timedelta(seconds=1))
    await runner.drain(rt)
    assert (await _line(rt, line.id)).state == LineState.suspended
    first = "minimal" if grace_service == "minimal" else "suspend"
    # grace_service=none: the suspend job at grace start is the very one of the
    # suspension (same key): the network is told once.
    expected = [first, "suspend"] if grace_service == "minimal" else ["suspend"]
    assert [a for a, _ in await _network(rt, line.id)] == expected


async def test_restore_many_brings_back_lapsed_lines_in_one_batch(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    _, me = await subscriber(client)
    lapsed = [
        await give_line(rt, me, state=LineState.grace, expires_at=frozen.now - timedelta(days=1)),
        await give_line(rt, me, state=LineState.suspended,
                        expires_at=frozen.now - timedelta(days=9)),
    ]
    fine = await give_line(rt, me, expires_at=frozen.now + timedelta(days=3))
    new_expiry = frozen.now + timedelta(days=30)
    names = {"zh-CN": "畅享30天", "en": "Enjoy 30 days"}
    async with unit_of_work(rt.sessions) as s:
        for line in [*lapsed, fine]:
            got = await s.get(Line, line.id)
            assert got is not None
            got.expires_at = new_expiry
        await s.flush()
        done = await lifecycle.restore_many(
            s, [line.id for line in [*lapsed, fine]], reason="renewed",
            plans={line.id: names for line in [*lapsed, fine]},
        )
    assert sorted(r.from_state for r in done) == ["grace", "suspended"]
    for line in lapsed:
        assert (await _line(rt, line.id)).state == LineState.active
        assert [a for a, _ in await _network(rt, line.id)] == ["restore"]
        assert await _notices(rt, line.id) == ["restored"]
    assert await _notices(rt, fine.id) == []
    async with unit_of_work(rt.sessions) as s:  # a replay changes nothing
        assert await lifecycle.restore_many(s, [lapsed[0].id], reason="renewed") == []


async def test_a_line_renewed_after_the_batch_picked_it_is_not_moved(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    _, me = await subscriber(client)
    line = await give_line(rt, me, expires_at=frozen.now - timedelta(minutes=5))
    move = lifecycle.moves(rt.settings)[0]
    async with unit_of_work(rt.sessions) as s:
        got = await s.get(Line, line.id)
        assert got is not None
        got.expires_at = frozen.now + timedelta(days=30)  # a renewal got there first
        await s.flush()
        assert await lifecycle.apply_move(s, rt.settings, move) == 0
    assert (await _line(rt, line.id)).state == LineState.active


async def test_the_network_job_failing_is_retried_and_visible(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    _, me = await subscriber(client)
    line = await give_line(rt, me, expires_at=frozen.now - timedelta(minutes=5))
    rt.settings.provisioning_sandbox_fail = True
    await runner.run_once(rt)
    await runner.run_once(rt)
    assert await _network(rt, line.id) == [("minimal", "pending")]
    async with rt.sessions() as s:
        job = await s.scalar(select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.line_state))
        assert job is not None and "sandbox refused minimal" in job.last_error
        from openmvno.worker import status as job_status

        shown = await job_status.status(s, runner.jobs(rt))
    mine = next(j for j in shown.jobs if j.name == "lines.lifecycle")
    assert mine.counts is not None and mine.counts.due == 0
    rt.settings.provisioning_sandbox_fail = False
    frozen.advance(minutes=5)
    await runner.drain(rt)
    assert await _network(rt, line.id) == [("minimal", "sent")]


def _unused(*_: Any) -> None:  # keeps imports honest for type checkers
    _ = OutboxState


async def _statements_for_one_batch(rt: Runtime, me: uuid.UUID, n: int, move_index: int) -> int:
    from sqlalchemy import event

    from openmvno.catalog.models import Plan

    async with unit_of_work(rt.sessions) as s:
        plan = await s.scalar(select(Plan).where(Plan.code == "M30"))
        assert plan is not None
        plan_id = plan.id
    state = [LineState.active, LineState.grace, LineState.suspended][move_index]
    for _ in range(n):
        line = await give_line(rt, me, state=state, expires_at=datetime_now(rt) - timedelta(
            days=60))
        async with unit_of_work(rt.sessions) as s:
            got = await s.get(Line, line.id)
            assert got is not None
            got.plan_id = plan_id
    count = {"n": 0}

    def counted(*_: Any) -> None:
        count["n"] += 1

    event.listen(rt.engine.sync_engine, "before_cursor_execute", counted)
    try:
        async with unit_of_work(rt.sessions) as s:
            moved = await lifecycle.apply_move(s, rt.settings, lifecycle.moves(rt.settings)[move_index])
    finally:
        event.remove(rt.engine.sync_engine, "before_cursor_execute", counted)
    assert moved == n
    return count["n"]


def datetime_now(_: Runtime) -> Any:
    from openmvno import clock

    return clock.now()


@pytest.mark.parametrize("move_index", [0, 1, 2])
async def test_a_batch_costs_the_same_statements_for_3_lines_as_for_60(  # set-based
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock, move_index: int
) -> None:
    await seed_plans(rt)
    _, me = await subscriber(client)
    few = await _statements_for_one_batch(rt, me, 3, move_index)
    many = await _statements_for_one_batch(rt, me, 60, move_index)
    assert few == many, (few, many)
    assert many <= 10, many  # begin/commit, move, events, network jobs, plans, notices, quarantine
