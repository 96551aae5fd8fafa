"""The expiry reminder schedule, set at run time on the admin console: the worker sends
the reminders of the new schedule (this process at once, another process within its cache
time), wrong schedules are refused with a clear message and store nothing, every change is
an audit event with the schedule before and after, and agents cannot change it."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from openmvno.accounts.models import Role
from openmvno.audit.models import AuditEvent
from openmvno.catalog.models import Plan, PlanKind
from openmvno.db import unit_of_work
from openmvno.errors import InvalidInput
from openmvno.notifications import reminders
from openmvno.notifications.models import Notice
from openmvno.runtime import Runtime, build_runtime
from openmvno.staff import runtime_settings, schedule
from openmvno.staff.models import RuntimeSetting
from tests.conftest import FrozenClock, app_for
from tests.console.helpers import staff_client
from tests.notifications.helpers import account, line


async def _plan(rt: Runtime) -> Plan:
    plan = Plan(code="S30", kind=PlanKind.data, name_zh="畅享30天", name_en="Enjoy 30 days",
                price_minor=3000, currency="CNY", validity_days=30)
    async with unit_of_work(rt.sessions) as s:
        s.add(plan)
    return plan


async def _keys(rt: Runtime) -> list[str]:
    async with unit_of_work(rt.sessions, readonly=True) as s:
        return sorted((await s.scalars(select(Notice.key))).all())


async def _events(rt: Runtime) -> list[AuditEvent]:
    async with unit_of_work(rt.sessions, readonly=True) as s:
        return list((await s.scalars(select(AuditEvent).where(
            AuditEvent.action == "reminders.schedule").order_by(AuditEvent.at))).all())


async def test_the_console_schedule_decides_which_reminders_the_worker_sends(
    rt: Runtime, frozen: FrozenClock
) -> None:
    plan = await _plan(rt)
    a = await account(rt, language="en", name="Li Lei")
    far = await line(rt, a, plan_id=plan.id, expires_at=frozen.now + timedelta(days=12))
    mid = await line(rt, a, plan_id=plan.id, expires_at=frozen.now + timedelta(days=9, hours=12))
    app = app_for(rt)
    admin, csrf = await staff_client(app, rt, Role.admin)

    page = await admin.get("/console/admin/notices?lang=en")
    assert page.status_code == 200
    assert 'data-test="reminder-days">7, 3, 1<' in page.text
    assert "set by OPENMVNO_EXPIRY_REMINDER_DAYS" in page.text
    # Under the environment's 7, 3, 1 neither line is due yet (12 and 9.5 days left).
    assert await reminders.run_due(rt) == 0

    r = await admin.post("/console/admin/reminders",
                         data={"csrf": csrf, "days": "14，10", "reason": "earlier notice"})
    assert r.status_code == 303 and r.headers["location"].endswith("done=saved")
    page = await admin.get("/console/admin/notices?lang=en")
    assert 'data-test="reminder-days">14, 10<' in page.text and "set on this console" in page.text
    await admin.aclose()

    assert await reminders.run_due(rt) == 2
    assert await _keys(rt) == sorted([
        reminders.reminder_key(far.id, far.expires_at, 14),  # type: ignore[arg-type]
        reminders.reminder_key(mid.id, mid.expires_at, 10),  # type: ignore[arg-type]
    ])
    assert await reminders.run_due(rt) == 0
    frozen.advance(days=3)  # far: 9 days left (its 10-day one); mid: 6.5 (no 7-day one now)
    assert await reminders.run_due(rt) == 1
    frozen.advance(days=5)  # mid: 1.5 days left: the old 3- and 1-day thresholds are gone
    assert await reminders.run_due(rt) == 0
    assert [k.rsplit(":", 1)[1] for k in await _keys(rt) if str(far.id) in k] == ["10", "14"]
    assert [k.rsplit(":", 1)[1] for k in await _keys(rt) if str(mid.id) in k] == ["10"]


async def test_another_process_follows_the_schedule_within_its_cache_time(
    rt: Runtime, frozen: FrozenClock
) -> None:
    plan = await _plan(rt)
    a = await account(rt)
    await line(rt, a, plan_id=plan.id, expires_at=frozen.now + timedelta(days=14, hours=1))
    # a worker process of its own, which re-reads the table each round (cache time 0)
    other = build_runtime(rt.settings.model_copy(update={"runtime_settings_cache_seconds": 0}))
    try:
        assert await reminders.run_due(other) == 0
        app = app_for(rt)
        admin, csrf = await staff_client(app, rt, Role.admin)
        r = await admin.post("/console/admin/reminders", data={"csrf": csrf, "days": "15"})
        assert r.status_code == 303
        await admin.aclose()
        assert await reminders.run_due(other) == 1
        (sms,) = [k for k in await _keys(rt)]
        assert sms.endswith(":15")
    finally:
        await other.close()


@pytest.mark.parametrize("typed", ["0", "61", "1.5", "7, 6, 5, 4, 3, 2", "", "  ", "seven",
                                   "-3", "3, x", "1000000"])
async def test_a_wrong_schedule_is_refused_with_a_clear_message_and_stores_nothing(
    rt: Runtime, typed: str
) -> None:
    app = app_for(rt)
    admin, csrf = await staff_client(app, rt, Role.admin)
    r = await admin.post("/console/admin/reminders?lang=en", data={"csrf": csrf, "days": typed})
    assert r.status_code == 422, r.text
    assert ("Type one to 5 whole numbers of days between 1 and 60, such as 7, 3, 1."
            in r.text)
    assert 'data-test="reminder-days">7, 3, 1<' in r.text  # the schedule in force is unchanged
    zh = await admin.post("/console/admin/reminders?lang=zh-CN",
                          data={"csrf": csrf, "days": typed})
    assert "请输入 1 到 5 个 1 至 60 之间的整数天数" in zh.text
    async with unit_of_work(rt.sessions, readonly=True) as s:
        assert (await s.scalars(select(RuntimeSetting.key))).all() == []
    assert await _events(rt) == []
    await admin.aclose()


async def test_each_change_is_audited_with_before_and_after(rt: Runtime) -> None:
    app = app_for(rt)
    admin, csrf = await staff_client(app, rt, Role.admin)
    me = await admin.get("/console/admin/notices")
    assert me.status_code == 200
    for typed in ("14, 7, 1", "1, 7, 14, 14", "2"):  # the second is the same schedule
        r = await admin.post("/console/admin/reminders",
                             data={"csrf": csrf, "days": typed, "reason": "season"})
        assert r.status_code == 303
    first, second = await _events(rt)
    assert first.data == {"before": {"days": [7, 3, 1], "from": "environment"},
                          "after": {"days": [14, 7, 1]}}
    assert second.data == {"before": {"days": [14, 7, 1], "from": "console"},
                           "after": {"days": [2]}}
    assert first.reason == "season" and first.actor_id is not None
    assert first.subject_id == runtime_settings.REMINDER_DAYS
    async with unit_of_work(rt.sessions, readonly=True) as s:
        row = await s.get(RuntimeSetting, runtime_settings.REMINDER_DAYS)
        assert row is not None and row.value == [2] and row.updated_by == first.actor_id
    log = await admin.get("/console/admin/audit?action=reminders")
    assert log.text.count("reminders.schedule") >= 2
    await admin.aclose()


async def test_agents_cannot_change_the_schedule(rt: Runtime) -> None:
    app = app_for(rt)
    agent, csrf = await staff_client(app, rt, Role.agent)
    r = await agent.post("/console/admin/reminders", data={"csrf": csrf, "days": "5"})
    assert r.status_code == 403
    async with unit_of_work(rt.sessions, readonly=True) as s:
        assert (await s.scalars(select(RuntimeSetting.key))).all() == []
    await agent.aclose()


def test_parse_days_takes_what_people_type() -> None:
    assert schedule.parse_days("7, 3, 1") == [7, 3, 1]
    assert schedule.parse_days("1 3、7；7") == [7, 3, 1]
    assert schedule.parse_days("60") == [60]
    for wrong in ("0", "61", "1,2,3,4,5,6", "", "x", "2.0", "+3", "٣"):
        with pytest.raises(InvalidInput) as caught:
            schedule.parse_days(wrong)
        assert caught.value.code == "reminder_days_invalid"


async def test_the_admin_api_reads_and_sets_the_schedule(
    rt: Runtime, client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    from tests.console.helpers import STAFF_PASSWORD, make_staff

    plan = await _plan(rt)
    a = await account(rt)
    await line(rt, a, plan_id=plan.id, expires_at=frozen.now + timedelta(days=20))
    tokens = {}
    for role in (Role.admin, Role.agent):
        email = await make_staff(rt, role)
        r = await client.post("/api/v1/auth/token",
                              json={"login": email, "password": STAFF_PASSWORD})
        assert r.status_code == 200, r.text
        tokens[role] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    admin = tokens[Role.admin]
    r = await client.get("/api/v1/admin/reminder-schedule", headers=admin)
    assert r.json() == {"days": [7, 3, 1], "source": "environment"}
    assert (await client.get("/api/v1/admin/reminder-schedule",
                             headers=tokens[Role.agent])).status_code == 403
    r = await client.put("/api/v1/admin/reminder-schedule", headers=tokens[Role.agent],
                         json={"days": [21]})
    assert r.status_code == 403
    for wrong in ([], [0], [61], [1, 2, 3, 4, 5, 6], [2**40]):
        r = await client.put("/api/v1/admin/reminder-schedule",
                             headers={**admin, "Accept-Language": "zh-CN"}, json={"days": wrong})
        assert r.status_code == 422, (wrong, r.text)
    r = await client.put("/api/v1/admin/reminder-schedule", headers={**admin, "Accept-Language": "en"},
                         json={"days": [0]})
    assert r.json()["code"] == "reminder_days_invalid"
    assert "between 1 and 60" in r.json()["detail"]
    assert await _events(rt) == []
    r = await client.put("/api/v1/admin/reminder-schedule", headers=admin,
                         json={"days": [1, 21, 21], "reason": "api"})
    assert r.status_code == 200 and r.json() == {"days": [21, 1], "source": "console"}
    assert (await client.get("/api/v1/admin/reminder-schedule", headers=admin)).json() == {
        "days": [21, 1], "source": "console"}
    (event,) = await _events(rt)
    assert event.data["after"] == {"days": [21, 1]} and event.reason == "api"
    assert await reminders.run_due(rt) == 1  # the 20-day line: inside the new 21-day one
