"""The expiry reminders job: 7, 3 and 1 days before, once per line and threshold, the
auto-renew setting named, nothing for lines far from expiry or not active."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from openmvno.catalog.models import Plan, PlanKind
from openmvno.db import unit_of_work
from openmvno.lines.models import LineState
from openmvno.notifications import reminders
from openmvno.notifications.models import Notice
from openmvno.renewals.models import AutoRenewSetting
from openmvno.runtime import Runtime
from openmvno.worker import runner
from tests.conftest import FrozenClock
from tests.notifications.helpers import account, line, outbox


async def _plan(rt: Runtime) -> Plan:
    plan = Plan(code="R30", kind=PlanKind.data, name_zh="畅享30天", name_en="Enjoy 30 days",
                price_minor=3000, currency="CNY", validity_days=30)
    async with unit_of_work(rt.sessions) as s:
        s.add(plan)
    return plan


async def _keys(rt: Runtime) -> list[str]:
    async with unit_of_work(rt.sessions) as s:
        return sorted((await s.scalars(select(Notice.key))).all())


async def test_reminders_at_7_3_1_days_once_each(rt: Runtime, frozen: FrozenClock) -> None:
    plan = await _plan(rt)
    a = await account(rt, language="en", name="Li Lei")
    soon = await line(rt, a, plan_id=plan.id, expires_at=frozen.now + timedelta(days=6, hours=12))
    close = await line(rt, a, plan_id=plan.id, expires_at=frozen.now + timedelta(days=2))
    await line(rt, a, plan_id=plan.id, expires_at=frozen.now + timedelta(days=20))
    await line(rt, a, plan_id=plan.id, expires_at=frozen.now + timedelta(days=1),
               state=LineState.grace)
    async with unit_of_work(rt.sessions) as s:
        s.add(AutoRenewSetting(line_id=close.id, account_id=a, enabled=True))

    assert await reminders.run_due(rt) == 2
    assert await reminders.run_due(rt) == 0  # each once
    assert await _keys(rt) == sorted([
        reminders.reminder_key(soon.id, soon.expires_at, 7),  # type: ignore[arg-type]
        reminders.reminder_key(close.id, close.expires_at, 3),  # type: ignore[arg-type]
    ])
    bodies = {m.body for m in await outbox(rt)}
    assert (f"OpenMVNO Demo Mobile: Enjoy 30 days on {close.msisdn} ends on 2026-11-27 "
            "20:00 (in 2 days). Renewing costs CN¥30.00. Auto-renew is on: we renew it for "
            "you.") in bodies
    assert any("in 7 days" in b and "Auto-renew is off" in b for b in bodies)

    frozen.advance(days=4)  # soon: 2.5 days left; close: expired tomorrow-ish
    assert await reminders.run_due(rt) == 1
    frozen.advance(days=1, hours=12)  # soon: 1 day left; close has expired
    assert await reminders.run_due(rt) == 1
    frozen.advance(hours=12)
    assert await reminders.run_due(rt) == 0
    assert [k.rsplit(":", 1)[1] for k in await _keys(rt) if str(soon.id) in k] == ["1", "3", "7"]


async def test_the_worker_runs_the_reminders(rt: Runtime, frozen: FrozenClock) -> None:
    plan = await _plan(rt)
    a = await account(rt)
    await line(rt, a, plan_id=plan.id, expires_at=frozen.now + timedelta(hours=20))
    assert reminders.run_due in runner.jobs(rt)
    await runner.drain(rt)
    assert len(await _keys(rt)) == 1
    (sms,) = await outbox(rt)
    assert "还有1天" in sms.body


async def test_two_workers_at_once_send_each_reminder_once(
    rt: Runtime, frozen: FrozenClock
) -> None:
    from openmvno.runtime import build_runtime

    plan = await _plan(rt)
    accounts = [await account(rt) for _ in range(4)]
    for i in range(40):
        await line(rt, accounts[i % 4], plan_id=plan.id,
                   expires_at=frozen.now + timedelta(days=2, minutes=i))
    other = build_runtime(rt.settings)
    try:
        done = await asyncio.gather(reminders.run_due(rt), reminders.run_due(other))
    finally:
        await other.close()
    assert sum(done) == 40
    assert len(await _keys(rt)) == 40
    assert len(await outbox(rt)) == 40
    assert await reminders.run_due(rt) == 0
