"""Outbox delivery: real SMTP (aiosmtpd), retries with backoff, no double sends."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from openmvno.db import unit_of_work
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxMessage, OutboxState
from openmvno.runtime import Runtime, build_runtime
from openmvno.worker import runner
from tests.conftest import FrozenClock


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
async def smtp_rt(rt: Runtime, smtp: tuple[Inbox, int]) -> Any:
    settings = rt.settings.model_copy(update={"email_adapter": "smtp", "smtp_port": smtp[1]})
    runtime = build_runtime(settings)
    yield runtime
    await runtime.close()


async def _queue_email(rt: Runtime, key: str, to: str = "li@example.com") -> None:
    async with unit_of_work(rt.sessions) as session:
        await notifications.send_email(
            session, to=to, subject="您的验证码", body="验证码 123456", dedupe_key=key, account_id=None
        )


async def _row(rt: Runtime, key: str) -> OutboxMessage:
    async with rt.sessions() as session:
        row = await session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == key))
        assert row is not None
        return row


async def test_email_is_delivered_over_real_smtp(smtp_rt: Runtime, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    await _queue_email(smtp_rt, "mail:1")
    assert await runner.drain(smtp_rt) == 1
    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert msg["To"] == "li@example.com"
    assert str(make_header(decode_header(msg["Subject"]))) == "您的验证码"
    assert "验证码 123456" in msg.get_payload(decode=True).decode()
    row = await _row(smtp_rt, "mail:1")
    assert row.state is OutboxState.sent and row.sent_at is not None


async def test_same_dedupe_key_is_queued_once(smtp_rt: Runtime, smtp: tuple[Inbox, int]) -> None:
    await _queue_email(smtp_rt, "mail:dup")
    await _queue_email(smtp_rt, "mail:dup")
    await runner.drain(smtp_rt)
    assert len(smtp[0].messages) == 1


async def test_failed_delivery_is_retried_with_backoff(rt: Runtime, frozen: FrozenClock) -> None:
    settings = rt.settings.model_copy(update={"email_adapter": "smtp", "smtp_port": _free_port()})
    dead_rt = build_runtime(settings)
    try:
        await _queue_email(dead_rt, "mail:retry")
        assert await runner.run_once(dead_rt) == 1
        row = await _row(dead_rt, "mail:retry")
        assert row.state is OutboxState.pending
        assert row.attempts == 1
        assert "Connection" in row.last_error or "refused" in row.last_error.lower()
        assert row.next_attempt_at == frozen.now + runner.backoff(1)
        assert await runner.run_once(dead_rt) == 0  # not due yet
        for _ in range(runner.MAX_ATTEMPTS - 1):
            frozen.advance(hours=2)
            await runner.run_once(dead_rt)
        row = await _row(dead_rt, "mail:retry")
        assert row.state is OutboxState.dead
        assert row.attempts == runner.MAX_ATTEMPTS
    finally:
        await dead_rt.close()


async def test_two_workers_never_send_the_same_message_twice(
    smtp_rt: Runtime, smtp: tuple[Inbox, int]
) -> None:
    for i in range(30):
        await _queue_email(smtp_rt, f"mail:many:{i}", to=f"u{i}@example.com")
    other = build_runtime(smtp_rt.settings)
    try:
        await asyncio.gather(runner.drain(smtp_rt), runner.drain(other))
    finally:
        await other.close()
    recipients = [m["To"] for m in smtp[0].messages]
    assert sorted(recipients) == sorted(f"u{i}@example.com" for i in range(30))


async def test_a_delivered_code_is_not_kept_at_rest(
    smtp_rt: Runtime, smtp: tuple[Inbox, int]
) -> None:
    async with unit_of_work(smtp_rt.sessions) as session:
        await notifications.send_email(
            session, to="li@example.com", subject="code", body="Your code is 654321",
            dedupe_key="otp:x", account_id=None, sensitive=True,
        )
    await runner.drain(smtp_rt)
    assert "654321" in smtp[0].messages[0].get_payload(decode=True).decode()
    row = await _row(smtp_rt, "otp:x")
    assert row.state is OutboxState.sent
    assert "654321" not in row.body
    assert row.body == runner.REDACTED


async def test_operator_sees_dead_messages_and_requeues_them(
    rt: Runtime, frozen: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from openmvno.cli import app

    settings = rt.settings.model_copy(update={"email_adapter": "smtp", "smtp_port": _free_port()})
    dead_rt = build_runtime(settings)
    try:
        await _queue_email(dead_rt, "mail:dead")
        for _ in range(runner.MAX_ATTEMPTS):
            await runner.run_once(dead_rt)
            frozen.advance(hours=2)
    finally:
        await dead_rt.close()
    monkeypatch.setenv("OPENMVNO_DATABASE_URL", rt.settings.database_url)
    cli = CliRunner()
    shown = await asyncio.to_thread(cli.invoke, app, ["outbox", "status"])
    assert shown.exit_code == 0, shown.output
    assert "dead" in shown.output and "li@example.com" in shown.output
    retried = await asyncio.to_thread(cli.invoke, app, ["outbox", "retry"])
    assert "requeued 1" in retried.output
    row = await _row(rt, "mail:dead")
    assert row.state is OutboxState.pending and row.attempts == 0
