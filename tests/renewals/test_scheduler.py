"""The auto-renewal schedule: who is due when, wallet and card funding, fallback,
retries, and never a second renewal or charge for one period."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from openmvno.adapters.payments.sandbox import SandboxProvider
from openmvno.adapters.payments.sandbox_models import SandboxCharge
from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.lines.models import Line, LineState
from openmvno.notifications.models import Notice, OutboxMessage
from openmvno.payments.models import PaymentAttempt
from openmvno.renewals import schedule, scheduler
from openmvno.renewals.models import AutoRenewSetting, Funding
from openmvno.renewals.runs import RenewalRun
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.orders.helpers import fund_wallet, give_line, seed_plans, subscriber, wallet_minor
from tests.payments.card_helpers import DECLINES_LATER, SAVES, save_card


async def _auto_line(
    rt: Runtime, account_id: uuid.UUID, frozen: FrozenClock, *, days: int = 30,
    funding: Funding = Funding.wallet, card: uuid.UUID | None = None, fallback: bool = True,
) -> uuid.UUID:
    from openmvno.renewals import service

    line = await give_line(rt, account_id, expires_at=frozen.now + timedelta(days=days))
    async with unit_of_work(rt.sessions) as s:
        plan = await s.scalar(select(Plan).where(Plan.code == "M30"))
        found = await s.get(Line, line.id)
        assert plan is not None and found is not None
        found.plan_id = plan.id
        await s.flush()
        await service.set_auto_renew(s, account_id=account_id, line_id=line.id, enabled=True,
                                     settings=rt.settings)
        setting = await s.scalar(select(AutoRenewSetting).where(AutoRenewSetting.line_id == line.id))
        assert setting is not None
        setting.funding = funding
        setting.card_id = card
        setting.wallet_fallback = fallback
    return line.id


async def _state(rt: Runtime, line_id: uuid.UUID) -> tuple[Line, AutoRenewSetting]:
    async with unit_of_work(rt.sessions) as s:
        line = await s.get(Line, line_id)
        setting = await s.scalar(select(AutoRenewSetting).where(AutoRenewSetting.line_id == line_id))
        assert line is not None and setting is not None
        return line, setting


async def _notices(rt: Runtime, event: str = "renewal_failed") -> list[Notice]:
    async with unit_of_work(rt.sessions) as s:
        return list(await s.scalars(select(Notice).where(Notice.event == event)
                                    .order_by(Notice.created_at, Notice.key)))


async def _runs(rt: Runtime) -> int:
    async with unit_of_work(rt.sessions) as s:
        return len(list(await s.scalars(select(RenewalRun.id))))


async def _lapse(rt: Runtime, line_id: uuid.UUID, to: LineState) -> None:
    """What the lifecycle job does at expiry / end of grace."""
    from openmvno.lines import states

    async with unit_of_work(rt.sessions) as s:
        line = await s.get(Line, line_id)
        assert line is not None
        if to is LineState.suspended and line.state == LineState.active:
            await states.transition(s, line, LineState.grace, "expired")
        await states.transition(s, line, to, "lapsed")


async def test_wallet_renewal_at_t_minus_24h(
    client: Any, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    _, me = await subscriber(client)
    await fund_wallet(rt, me, 12000)
    line_id = await _auto_line(rt, me, frozen)
    expiry = frozen.now + timedelta(days=30)

    frozen.advance(days=29, hours=-1)  # T-25h: not yet
    assert await scheduler.run_due(rt) == 0
    frozen.advance(hours=1)  # T-24h
    assert await scheduler.run_due(rt) == 1
    assert await scheduler.run_due(rt) == 0  # nothing twice
    line, setting = await _state(rt, line_id)
    assert line.expires_at == expiry + timedelta(days=30)
    assert await wallet_minor(rt, me) == 7000
    assert setting.next_attempt_at == expiry + timedelta(days=30) - timedelta(hours=24)
    assert setting.attempts == 0 and setting.claimed_until is None
    assert await _notices(rt) == []

    frozen.advance(days=30)  # the next period, again at T-24h
    assert await scheduler.run_due(rt) == 1
    assert await wallet_minor(rt, me) == 2000
    line, _ = await _state(rt, line_id)
    assert line.expires_at == expiry + timedelta(days=60)
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.check(s) == []


async def test_short_wallet_retries_then_grace_with_one_notice_per_stage(
    client: Any, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    _, me = await subscriber(client)
    line_id = await _auto_line(rt, me, frozen)
    expiry = frozen.now + timedelta(days=30)
    frozen.now = expiry - timedelta(hours=24)
    assert await scheduler.run_due(rt) == 1
    _, setting = await _state(rt, line_id)
    assert setting.next_attempt_at == expiry - timedelta(hours=12)
    assert setting.last_failure == "insufficient_funds" and setting.attempts == 1
    frozen.now = expiry - timedelta(hours=12)
    assert await scheduler.run_due(rt) == 1
    frozen.now = expiry - timedelta(hours=1)
    assert await scheduler.run_due(rt) == 1
    _, setting = await _state(rt, line_id)
    assert setting.next_attempt_at == expiry + timedelta(hours=6)
    assert [n.key.rsplit(":", 1)[1] for n in await _notices(rt)] == ["before"]
    await _lapse(rt, line_id, LineState.grace)
    frozen.now = expiry + timedelta(hours=6)
    assert await scheduler.run_due(rt) == 1
    _, setting = await _state(rt, line_id)
    assert setting.next_attempt_at == expiry + timedelta(hours=18)  # backoff doubles
    notices = await _notices(rt)
    assert [n.key.rsplit(":", 1)[1] for n in notices] == ["before", "grace"]
    assert {n.event for n in notices} == {"renewal_failed"}
    async with unit_of_work(rt.sessions) as s:
        bodies = list(await s.scalars(select(OutboxMessage.body).where(
            OutboxMessage.account_id == me, OutboxMessage.dedupe_key.like("notice-%"))))
    assert len(bodies) == 2, bodies
    assert all("your wallet does not have enough money" in b for b in bodies), bodies

    # Suspended: attempts stop; a top-up is taken at once.
    await _lapse(rt, line_id, LineState.suspended)
    frozen.now = expiry + timedelta(hours=18)
    assert await scheduler.run_due(rt) == 1
    _, setting = await _state(rt, line_id)
    assert setting.waiting_for_wallet is True
    assert setting.next_attempt_at == frozen.now + timedelta(hours=24)
    frozen.advance(minutes=5)
    assert await scheduler.run_due(rt) == 0
    await fund_wallet(rt, me, 5000)
    assert await scheduler.run_due(rt) == 1
    line, setting = await _state(rt, line_id)
    assert line.state == LineState.active
    assert line.expires_at == frozen.now + timedelta(days=30)
    assert setting.waiting_for_wallet is False and setting.attempts == 0
    assert await wallet_minor(rt, me) == 0
    assert len(await _notices(rt)) == 2


async def _card(rt: Runtime, client: Any, me: uuid.UUID, number: str) -> uuid.UUID:
    setup = await save_card(rt, client, me, number)
    assert setup.card_id is not None
    return setup.card_id


async def _captures(rt: Runtime) -> list[str]:
    async with unit_of_work(rt.sessions) as s:
        return list(await s.scalars(
            select(SandboxCharge.idempotency_key).where(SandboxCharge.status == "succeeded")))


async def test_declined_card_falls_back_to_the_wallet(
    client: Any, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    _, me = await subscriber(client)
    await fund_wallet(rt, me, 5000)
    declining = await _card(rt, client, me, DECLINES_LATER)
    falls_back = await _auto_line(rt, me, frozen, funding=Funding.card, card=declining)
    no_fallback = await _auto_line(rt, me, frozen, funding=Funding.card, card=declining,
                                   fallback=False)
    frozen.advance(days=29)
    assert await scheduler.run_due(rt) == 2
    line, setting = await _state(rt, falls_back)
    assert line.expires_at == frozen.now + timedelta(days=31)
    assert setting.attempts == 0 and setting.last_failure == ""
    assert await wallet_minor(rt, me) == 0
    line2, setting2 = await _state(rt, no_fallback)
    assert setting2.last_failure == "card_declined" and setting2.attempts == 1
    assert await _captures(rt) == []
    assert [n.line_id for n in await _notices(rt)] == [no_fallback]
    # Another card for the next attempt: a new key, captured once.
    good = await _card(rt, client, me, SAVES)
    async with unit_of_work(rt.sessions) as s:
        found = await s.scalar(select(AutoRenewSetting).where(
            AutoRenewSetting.line_id == no_fallback))
        assert found is not None
        found.card_id = good
    frozen.advance(hours=12)
    assert await scheduler.run_due(rt) == 1
    assert await _captures(rt) != [] and len(await _captures(rt)) == 1
    line2, setting2 = await _state(rt, no_fallback)
    assert setting2.attempts == 0 and line2.expires_at == line.expires_at
    async with unit_of_work(rt.sessions) as s:
        found_keys = await s.scalars(select(PaymentAttempt.idempotency_key))
        keys = [k for k in found_keys if k and k.startswith("renewal:")]
    period = schedule.period_key(frozen.now - timedelta(days=29, hours=12) + timedelta(days=30))
    assert sorted(keys) == sorted([f"renewal:{falls_back}:{period}:0",
                                   f"renewal:{no_fallback}:{period}:0",
                                   f"renewal:{no_fallback}:{period}:1"])


class _Outage:
    """The sandbox provider, unreachable while ``down`` (its answers are lost)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def charge_saved(self, requests: Any) -> Any:
        if self.down:
            raise ConnectionError("provider unreachable")
        return await self.inner.charge_saved(requests)


async def test_an_unanswered_card_is_asked_again_with_the_same_key(
    client: Any, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    _, me = await subscriber(client)
    card = await _card(rt, client, me, SAVES)
    line_id = await _auto_line(rt, me, frozen, funding=Funding.card, card=card)
    outage = _Outage(SandboxProvider(rt))
    rt.extras["payment_provider"] = outage
    frozen.advance(days=29)
    assert await scheduler.run_due(rt) == 1
    _, setting = await _state(rt, line_id)
    assert setting.attempts == 0
    assert setting.next_attempt_at == frozen.now + timedelta(minutes=10)
    assert await _notices(rt) == [] and await _captures(rt) == []
    outage.down = False
    frozen.advance(minutes=10)
    assert await scheduler.run_due(rt) == 1
    assert len(await _captures(rt)) == 1
    line, setting = await _state(rt, line_id)
    assert line.expires_at == frozen.now - timedelta(days=29, minutes=10) + timedelta(days=60)
    async with unit_of_work(rt.sessions) as s:
        assert len(list(await s.scalars(select(PaymentAttempt.id)))) == 1


async def test_a_crash_after_the_capture_charges_the_card_once(
    client: Any, rt: Runtime, frozen: FrozenClock
) -> None:
    """A worker dies after the card was captured: the lease runs out, another worker takes
    the line, asks with the same key, gets the same capture and renews once."""
    await seed_plans(rt)
    _, me = await subscriber(client)
    card = await _card(rt, client, me, SAVES)
    line_id = await _auto_line(rt, me, frozen, funding=Funding.card, card=card)
    frozen.advance(days=29)
    claimed = await scheduler.claim(rt, 10)
    for c in claimed:
        scheduler._decide(rt, c, frozen.now)
    await scheduler._charge(rt, claimed)  # ... and the worker is killed here
    assert len(await _captures(rt)) == 1
    assert await scheduler.run_due(rt) == 0  # still leased
    frozen.advance(seconds=rt.settings.renewal_claim_seconds + 1)
    assert await scheduler.run_due(rt) == 1
    assert len(await _captures(rt)) == 1
    line, setting = await _state(rt, line_id)
    assert line.expires_at is not None and setting.attempts == 0
    assert await _runs(rt) == 1


async def test_a_batch_that_fails_after_its_claim_gives_its_lines_back(
    client: Any, rt: Runtime, frozen: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails in the middle of a batch: nothing of it is kept, its lines are
    free again at once (not after the lease) and the next round renews them once."""
    await seed_plans(rt)
    _, me = await subscriber(client)
    await fund_wallet(rt, me, 12000)
    line_id = await _auto_line(rt, me, frozen)
    frozen.advance(days=29)
    real = scheduler.renew_batch

    async def lost_connection(*_: Any) -> Any:
        raise ConnectionError("connection to the database was lost")

    monkeypatch.setattr(scheduler, "renew_batch", lost_connection)
    with pytest.raises(ConnectionError):
        await scheduler.run_due(rt)
    _, setting = await _state(rt, line_id)
    assert setting.claimed_until is None and await _runs(rt) == 0
    assert await wallet_minor(rt, me) == 12000

    monkeypatch.setattr(scheduler, "renew_batch", real)
    assert await scheduler.run_due(rt) == 1  # at once: the same clock, no lease to wait out
    assert await scheduler.run_due(rt) == 0
    assert await _runs(rt) == 1 and await wallet_minor(rt, me) == 7000


async def test_renewed_another_way_starts_a_new_schedule(
    client: Any, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    _, me = await subscriber(client)
    await fund_wallet(rt, me, 5000)
    line_id = await _auto_line(rt, me, frozen)
    async with unit_of_work(rt.sessions) as s:  # a plan bought by hand
        line = await s.get(Line, line_id)
        assert line is not None and line.expires_at is not None
        line.expires_at += timedelta(days=30)
        new_expiry = line.expires_at
    frozen.advance(days=29)
    assert await scheduler.run_due(rt) == 1
    _, setting = await _state(rt, line_id)
    assert setting.next_attempt_at == new_expiry - timedelta(hours=24)
    assert await wallet_minor(rt, me) == 5000


async def test_unbound_or_closed_lines_stop(
    client: Any, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    _, me = await subscriber(client)
    await fund_wallet(rt, me, 50000)
    closed = await _auto_line(rt, me, frozen)
    unbound = await _auto_line(rt, me, frozen)
    async with unit_of_work(rt.sessions) as s:
        a = await s.get(Line, closed)
        b = await s.get(Line, unbound)
        assert a is not None and b is not None
        a.state = LineState.terminated
        b.account_id = None
        b.auto_renew = False
    frozen.advance(days=29)
    assert await scheduler.run_due(rt) == 2
    for line_id in (closed, unbound):
        _, setting = await _state(rt, line_id)
        assert setting.enabled is False and setting.next_attempt_at is None
    assert await wallet_minor(rt, me) == 50000


async def test_a_capture_for_a_line_renewed_meanwhile_goes_back_to_the_wallet(
    client: Any, rt: Runtime, frozen: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The card is captured, and while the provider answered the subscriber renewed the
    line by hand: the renewal batch says duplicate, so the capture goes back to the wallet
    (once), and the schedule starts from the new expiry."""
    await seed_plans(rt)
    _, me = await subscriber(client)
    card = await _card(rt, client, me, SAVES)
    line_id = await _auto_line(rt, me, frozen, funding=Funding.card, card=card)
    real = scheduler.charge_cards

    async def charge_then_renewed_by_hand(rt_: Runtime, charges: Any) -> Any:
        answers = await real(rt_, charges)
        async with unit_of_work(rt.sessions) as s:
            line = await s.get(Line, line_id)
            assert line is not None and line.expires_at is not None
            line.expires_at += timedelta(days=30)
        return answers

    monkeypatch.setattr(scheduler, "charge_cards", charge_then_renewed_by_hand)
    frozen.advance(days=29)
    assert await scheduler.run_due(rt) == 1
    assert len(await _captures(rt)) == 1
    assert await _runs(rt) == 0
    assert await wallet_minor(rt, me) == 5000
    line, setting = await _state(rt, line_id)
    assert line.expires_at is not None
    assert setting.next_attempt_at == line.expires_at - timedelta(hours=24)
    monkeypatch.setattr(scheduler, "charge_cards", real)
    assert await scheduler.run_due(rt) == 0
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.check(s) == []


async def test_jobs_status_and_retry(client: Any, rt: Runtime, frozen: FrozenClock) -> None:
    """``openmvno jobs status`` shows the failing settings; ``jobs retry`` makes them due."""
    await seed_plans(rt)
    _, me = await subscriber(client)
    line_id = await _auto_line(rt, me, frozen)
    frozen.advance(days=29)
    assert await scheduler.run_due(rt) == 1  # the wallet is empty
    status, retry = scheduler.run_due.status, scheduler.run_due.retry  # type: ignore[attr-defined]
    async with unit_of_work(rt.sessions) as s:
        counts = await status(s, frozen.now)
    assert (counts.due, counts.claimed, counts.failing) == (0, 0, 1)
    async with unit_of_work(rt.sessions) as s:
        assert await retry(s) == 1
    async with unit_of_work(rt.sessions) as s:
        assert (await status(s, frozen.now)).due == 1
    _, setting = await _state(rt, line_id)
    assert setting.next_attempt_at == frozen.now
