"""notify / notify_many: the subscriber's language and channels, exactly once per key,
quiet hours, marketing consent, a fixed number of statements per batch."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from openmvno.db import unit_of_work
from openmvno.notifications import notices
from openmvno.notifications.models import Notice, OutboxKind, OutboxMessage, OutboxState
from openmvno.notifications.notices import NoticeRequest
from openmvno.notifications.preferences import set_preferences
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.notifications.helpers import account, line, outbox

EXPIRES = datetime(2026, 12, 1, 16, 30, tzinfo=UTC)  # 2026-12-02 00:30 in Shanghai
REMINDER: dict[str, Any] = {"days_left": 3, "plan": {"zh-CN": "畅享30天", "en": "Enjoy 30 days"},
                            "expires_at": EXPIRES, "amount_minor": 5000, "currency": "CNY",
                            "auto_renew": True}


async def _notify(rt: Runtime, account_id: uuid.UUID, key: str, *, event: str = "expiry_reminder",
                  params: dict[str, Any] | None = None, line_id: uuid.UUID | None = None,
                  urgent: bool = True) -> bool:
    async with unit_of_work(rt.sessions) as s:
        return await notices.notify(s, account_id=account_id, event=event, key=key,
                                    params=params if params is not None else REMINDER,
                                    line_id=line_id, urgent=urgent)


async def test_a_reminder_in_chinese_by_sms_and_email_once_per_key(rt: Runtime) -> None:
    a = await account(rt, email="li@example.com")
    ln = await line(rt, a)
    assert await _notify(rt, a, f"expiry_reminder:{ln.id}:x:3", line_id=ln.id) is True
    assert await _notify(rt, a, f"expiry_reminder:{ln.id}:x:3", line_id=ln.id) is False
    sms, email = sorted(await outbox(rt), key=lambda m: m.kind.value, reverse=True)
    assert sms.kind is OutboxKind.sms and email.kind is OutboxKind.email
    assert sms.body == (f"【OpenMVNO Demo Mobile】您的号码{ln.msisdn}的畅享30天将于2026-12-02 00:30"
                        "到期（还有3天），续费金额¥50.00。已开通自动续费，到期将自动为您续费。")
    assert email.recipient == "li@example.com"
    assert email.subject == "畅享30天将在3天后到期"
    assert email.body.startswith("李雷，您好：\n\n【OpenMVNO Demo Mobile】")
    assert email.payload["language"] == "zh-CN"


async def test_english_reader_and_what_is_left_out(rt: Runtime) -> None:
    a = await account(rt, language="en", name="Li Lei")
    params = {**REMINDER, "days_left": 1}
    del params["auto_renew"]
    assert await _notify(rt, a, "k:en", params=params)
    (sms,) = await outbox(rt)
    assert sms.body == ("OpenMVNO Demo Mobile: Enjoy 30 days on "
                        f"{sms.recipient} ends on 2026-12-02 00:30 (in 1 day). "
                        "Renewing costs CN¥50.00.")


async def test_a_caller_mistake_is_refused(rt: Runtime) -> None:
    a = await account(rt)
    with pytest.raises(ValueError, match="unknown notice event"):
        await _notify(rt, a, "k1", event="no_such_event")
    with pytest.raises(ValueError, match="needs plan"):
        await _notify(rt, a, "k2", params={k: v for k, v in REMINDER.items() if k != "plan"})


async def test_every_event_renders_in_both_languages_with_no_placeholder_left(rt: Runtime) -> None:
    for event in notices.EVENT_LIST:
        for language in ("zh-CN", "en"):
            values = notices.sample_values(event, language, rt.settings)
            for channel in notices.CHANNELS:
                text = notices.render(event, channel, language, values)
                assert "{" not in text.body and "}" not in text.body, (event.name, language)
                assert text.body, event.name
                if channel == "email":
                    assert text.subject and "{" not in text.subject
                if language == "zh-CN":
                    assert any("\u4e00" <= ch <= "\u9fff" for ch in text.body), event.name


async def test_quiet_hours_hold_non_urgent_notices_until_morning(
    rt: Runtime, frozen: FrozenClock
) -> None:
    frozen.now = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    a = await account(rt)
    await _notify(rt, a, "quiet:1", urgent=False)
    await _notify(rt, a, "urgent:1", urgent=True)
    rows = {m.dedupe_key: m for m in await outbox(rt)}
    async with unit_of_work(rt.sessions) as s:
        ids = dict((await s.execute(select(Notice.key, Notice.id))).all())
    quiet = rows[f"notice-sms:{ids['quiet:1']}"]
    urgent = rows[f"notice-sms:{ids['urgent:1']}"]
    assert quiet.next_attempt_at == datetime(2026, 11, 26, 0, 0, tzinfo=UTC)  # 08:00 local
    assert urgent.next_attempt_at == frozen.now


def test_quiet_hours_arithmetic(rt: Runtime) -> None:
    s = rt.settings
    at = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)  # 07:30 Shanghai, inside
    assert notices.quiet_until(at, s) == datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    assert notices.quiet_until(datetime(2026, 11, 26, 0, 0, tzinfo=UTC), s) is None  # 08:00
    assert notices.quiet_until(datetime(2026, 11, 26, 13, 59, tzinfo=UTC), s) is None  # 21:59
    day = s.model_copy(update={"quiet_hours_start": "01:00", "quiet_hours_end": "06:00"})
    assert notices.quiet_until(datetime(2026, 11, 25, 18, 0, tzinfo=UTC), day) == datetime(
        2026, 11, 25, 22, 0, tzinfo=UTC)
    off = s.model_copy(update={"quiet_hours_start": "00:00", "quiet_hours_end": "00:00"})
    assert notices.quiet_until(at, off) is None


async def test_channels_follow_the_preference_and_transactional_always_reaches(
    rt: Runtime,
) -> None:
    both = await account(rt, email="both@example.com")
    email_only = await account(rt, email="mail@example.com")
    no_email = await account(rt)
    async with unit_of_work(rt.sessions) as s:
        await set_preferences(s, account_id=email_only, sms=False, email=True, marketing=None)
        # wants email only, but has no address: the notice still reaches them by SMS
        await set_preferences(s, account_id=no_email, sms=False, email=True, marketing=None)
    for a in (both, email_only, no_email):
        await _notify(rt, a, f"pref:{a}")
    kinds: dict[uuid.UUID | None, list[str]] = {}
    for m in await outbox(rt):
        kinds.setdefault(m.account_id, []).append(m.kind.value)
    assert sorted(kinds[both]) == ["email", "sms"]
    assert kinds[email_only] == ["email"]
    assert kinds[no_email] == ["sms"]


async def test_marketing_only_with_consent(rt: Runtime) -> None:
    out = await account(rt)
    opted_in = await account(rt)
    async with unit_of_work(rt.sessions) as s:
        await set_preferences(s, account_id=opted_in, sms=None, email=None, marketing=True)
    offer = {"plan": "Enjoy 30 days", "amount_minor": 2500, "currency": "CNY"}
    assert await _notify(rt, out, "offer:1:out", event="offer", params=offer)
    assert await _notify(rt, opted_in, "offer:1:in", event="offer", params=offer)
    assert [m.account_id for m in await outbox(rt)] == [opted_in]


async def test_notify_many_is_a_fixed_number_of_statements(rt: Runtime) -> None:
    accounts = [await account(rt) for _ in range(3)]

    async def count(n: int, tag: str) -> tuple[int, int]:
        statements = 0

        def seen(*_: Any) -> None:
            nonlocal statements
            statements += 1

        items = [NoticeRequest(account_id=accounts[i % 3], event="wallet_low",
                               key=f"wallet_low:{tag}:{i}",
                               params={"balance_minor": 100 + i, "currency": "CNY"}, urgent=True)
                 for i in range(n)]
        items.append(items[0])  # the same key twice in one batch: once
        sa_event.listen(rt.engine.sync_engine, "before_cursor_execute", seen)
        try:
            async with unit_of_work(rt.sessions) as s:
                done = await notices.notify_many(s, items)
        finally:
            sa_event.remove(rt.engine.sync_engine, "before_cursor_execute", seen)
        return done, statements

    small = await count(5, "a")
    large = await count(300, "b")
    assert small[0] == 5 and large[0] == 300
    assert small[1] == large[1]  # the same statements, whatever the batch size
    again = await count(300, "b")
    assert again[0] == 0
    async with unit_of_work(rt.sessions) as s:
        assert await s.scalar(select(func.count()).select_from(Notice)) == 305
    assert len(await outbox(rt)) == 305


async def test_a_notice_to_an_unknown_account_is_skipped(rt: Runtime) -> None:
    assert await _notify(rt, uuid.uuid4(), "ghost:1") is False


def test_dates_are_in_the_operator_time_zone(rt: Runtime) -> None:
    at = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert notices.local_date(at, "en", "Asia/Shanghai") == "2027-01-01 00:00"
    assert notices.local_date(at, "en", "Europe/London") == "2026-12-31 16:00"
    assert notices.local_date(at + timedelta(hours=1), "zh-CN", "UTC") == "2026-12-31 17:00"


def test_a_plan_is_named_in_the_reader_language_whatever_form_it_comes_in(
    rt: Runtime,
) -> None:
    from openmvno.catalog.models import Plan

    event = notices.EVENTS["restored"]
    at = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    plan = Plan(code="X", name_zh="畅享30天", name_en="Enjoy 30 days")

    class Row:
        name_zh, name_en = "畅享30天", "Enjoy 30 days"

    for given in (plan, Row(), {"zh-CN": "畅享30天", "en": "Enjoy 30 days"}):
        for language, expected in (("zh-CN", "畅享30天"), ("en", "Enjoy 30 days")):
            values = notices.placeholder_values(event, {"plan": given, "expires_at": at},
                                                language=language, settings=rt.settings)
            assert values["plan"] == expected
            assert values["expires_at"] == "2027-01-01 00:00"


async def test_a_batch_larger_than_a_chunk_is_queued_whole(rt: Runtime) -> None:
    a = await account(rt, email="many@example.com")
    n = notices.CHUNK * 2 + 7
    items = [NoticeRequest(account_id=a, event="wallet_low", key=f"wallet_low:{a}:{i}",
                           params={"balance_minor": i, "currency": "CNY"}, urgent=True)
             for i in range(n)]
    async with unit_of_work(rt.sessions) as s:
        assert await notices.notify_many(s, items) == n
    async with unit_of_work(rt.sessions) as s:
        assert await notices.notify_many(s, items[-10:]) == 0
    rows = await outbox(rt)
    assert len(rows) == 2 * n
    assert {m.kind for m in rows} == {OutboxKind.sms, OutboxKind.email}
    assert len({m.dedupe_key for m in rows}) == 2 * n


async def test_the_runtime_settings_reach_notify_through_its_sessions(rt: Runtime) -> None:
    from openmvno.runtime import build_runtime

    other = build_runtime(rt.settings.model_copy(update={
        "operator_name": "Harbour Mobile", "timezone": "Europe/London"}))
    try:
        a = await account(other, language="en")
        async with unit_of_work(other.sessions) as s:
            assert notices.settings_of(s) is other.settings
            await notices.notify(s, account_id=a, event="restored", key=f"restored:{a}:x",
                                 params={"plan": "Enjoy 30 days", "expires_at": EXPIRES},
                                 urgent=True)
        (sms,) = await outbox(other)
    finally:
        await other.close()
        from openmvno.formatting import use_timezone

        use_timezone(rt.settings.timezone)  # the process's zone back to the test's
    assert sms.body == (f"Harbour Mobile: {sms.recipient} is working again. Enjoy 30 days "
                        "runs until 2026-12-01 16:30.")


async def test_rows_written_by_the_batch_path_read_back_through_the_models(
    rt: Runtime, frozen: FrozenClock
) -> None:
    a = await account(rt, email="rows@example.com")
    ln = await line(rt, a)
    assert await _notify(rt, a, "suspended:rows", event="suspended", params={},
                         line_id=ln.id, urgent=True)
    async with unit_of_work(rt.sessions) as s:
        n = (await s.scalars(select(Notice))).one()
        messages = (await s.scalars(select(OutboxMessage))).all()
    assert (n.created_at, n.account_id, n.line_id, n.urgent, n.channels) == (
        frozen.now, a, ln.id, True, "sms,email")
    assert len(messages) == 2
    for m in messages:
        assert (m.created_at, m.next_attempt_at, m.account_id, m.attempts) == (
            frozen.now, frozen.now, a, 0)
        assert m.payload == {"notice": str(n.id), "event": "suspended", "language": "zh-CN"}
        assert m.state is OutboxState.pending and m.claimed_until is None and m.sent_at is None
