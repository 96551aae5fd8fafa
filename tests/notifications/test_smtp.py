"""Notices by email through the real SMTP adapter against aiosmtpd on loopback: content,
headers and language, one message per event; STARTTLS with a throwaway CA and AUTH LOGIN;
a server that is down for a while gets each mail once after it is back."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from openmvno.adapters.email.smtp import SmtpEmail, message_id
from openmvno.adapters.registry import email_sender
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.notifications import notices
from openmvno.notifications.preferences import set_preferences
from openmvno.runtime import Runtime, build_runtime
from openmvno.worker import runner
from tests.conftest import FrozenClock
from tests.notifications.helpers import account, line, outbox

EXPIRES = datetime(2026, 12, 20, 4, 0, tzinfo=UTC)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        self.envelopes.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _text(header: str | None) -> str:
    return str(make_header(decode_header(header or "")))


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def _smtp_settings(rt: Runtime, port: int, **more: Any) -> Settings:
    return rt.settings.model_copy(update={"email_adapter": "smtp", "smtp_host": "127.0.0.1",
                                          "smtp_port": port, "smtp_sender":
                                          "notices@op.example", **more})


async def _email_subscriber(rt: Runtime, language: str, email: str) -> Any:
    a = await account(rt, language=language, email=email,
                      name="王芳" if language == "zh-CN" else "Fang Wang")
    async with unit_of_work(rt.sessions) as s:
        await set_preferences(s, account_id=a, sms=False, email=True, marketing=None)
    return a


async def _remind(rt: Runtime, a: Any, line_id: Any, days: int) -> None:
    async with unit_of_work(rt.sessions) as s:
        await notices.notify(
            s, account_id=a, event="expiry_reminder", line_id=line_id,
            key=f"expiry_reminder:{line_id}:{EXPIRES.isoformat()}:{days}", urgent=True,
            params={"days_left": days, "plan": {"zh-CN": "畅享30天", "en": "Enjoy 30 days"},
                    "expires_at": EXPIRES, "amount_minor": 5000, "currency": "CNY",
                    "auto_renew": False},
        )


async def test_each_event_is_one_mail_with_its_headers_and_language(
    rt: Runtime, smtp: tuple[Inbox, int], frozen: FrozenClock
) -> None:
    inbox, port = smtp
    mail_rt = build_runtime(_smtp_settings(rt, port))
    try:
        zh = await _email_subscriber(mail_rt, "zh-CN", "fang@example.com")
        en = await _email_subscriber(mail_rt, "en", "fang.en@example.com")
        zh_line, en_line = await line(mail_rt, zh), await line(mail_rt, en)
        await _remind(mail_rt, zh, zh_line.id, 7)
        await _remind(mail_rt, zh, zh_line.id, 7)  # the same period again: nothing more
        await _remind(mail_rt, zh, zh_line.id, 3)
        await _remind(mail_rt, en, en_line.id, 3)
        assert await runner.drain(mail_rt) >= 3
        assert await runner.drain(mail_rt) == 0
    finally:
        await mail_rt.close()
    assert len(inbox.messages) == 3
    by_to: dict[str, list[Message]] = {}
    for m in inbox.messages:
        by_to.setdefault(m["To"], []).append(m)
    (first,) = [m for m in by_to["fang@example.com"] if "7" in _text(m["Subject"])]
    assert first["From"] == "notices@op.example"
    assert _text(first["Subject"]) == "畅享30天将在7天后到期"
    assert first["Content-Language"] == "zh-CN"
    assert first["Date"] == "Wed, 25 Nov 2026 12:00:00 +0000"
    body = first.get_payload(decode=True).decode()
    assert body.startswith("王芳，您好：")
    assert f"您的号码{zh_line.msisdn}的畅享30天将于2026-12-20 12:00到期（还有7天），续费金额¥50.00" in body
    assert "未开通自动续费" in body
    rows = {m.recipient + m.subject: m for m in await outbox(rt)}
    row = rows["fang@example.com" + "畅享30天将在7天后到期"]
    assert first["Message-ID"] == message_id(row.dedupe_key, "notices@op.example")
    english = by_to["fang.en@example.com"][0]
    assert english["Content-Language"] == "en"
    assert _text(english["Subject"]) == "Enjoy 30 days ends in 3 days"
    assert "Hello Fang Wang," in english.get_payload(decode=True).decode()
    assert len({m["Message-ID"] for m in inbox.messages}) == 3


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[Inbox, int, str, list[str]]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    mechanisms: list[str] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        mechanisms.append(mechanism)
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login, auth_data.password) == (b"mailer", b"s3cret-pass")
        return AuthResult(success=ok, handled=False)

    inbox = Inbox()
    port = _free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, tls_context=server_ctx, require_starttls=True,
        authenticator=authenticator, auth_required=True, auth_require_tls=True,
        auth_exclude_mechanism=["PLAIN"],
    )
    controller.start()
    yield inbox, port, str(ca_file), mechanisms
    controller.stop()


async def test_starttls_and_auth_login(
    rt: Runtime, tls_smtp: tuple[Inbox, int, str, list[str]]
) -> None:
    inbox, port, ca_file, mechanisms = tls_smtp
    settings = _smtp_settings(rt, port, smtp_starttls=True, smtp_ca_file=ca_file,
                              smtp_user="mailer", smtp_password=SecretStr("s3cret-pass"))
    sender = email_sender(settings)
    assert isinstance(sender, SmtpEmail)
    await sender.send(to="li@example.com", subject="测试", body="正文", dedupe_key="t:1",
                      language="zh-CN")
    assert mechanisms == ["LOGIN"]
    assert len(inbox.messages) == 1 and _text(inbox.messages[0]["Subject"]) == "测试"

    wrong = SmtpEmail.from_settings(
        settings.model_copy(update={"smtp_password": SecretStr("nope")}))
    with pytest.raises(Exception, match=r"535|Authentication"):
        await wrong.send(to="li@example.com", subject="x", body="y", dedupe_key="t:2")
    plain = SmtpEmail.from_settings(settings.model_copy(update={"smtp_starttls": False}))
    # without TLS the server offers no AUTH: the password never goes out in clear
    with pytest.raises(Exception, match="AUTH extension not supported"):
        await plain.send(to="li@example.com", subject="x", body="y", dedupe_key="t:3")
    untrusted = SmtpEmail.from_settings(settings.model_copy(update={"smtp_ca_file": ""}))
    with pytest.raises(ssl.SSLCertVerificationError):
        await untrusted.send(to="li@example.com", subject="x", body="y", dedupe_key="t:4")
    assert len(inbox.messages) == 1


async def test_server_down_for_a_while_then_every_mail_once(
    rt: Runtime, frozen: FrozenClock
) -> None:
    port = _free_port()
    mail_rt = build_runtime(_smtp_settings(rt, port))
    inbox = Inbox()
    try:
        a = await _email_subscriber(mail_rt, "zh-CN", "down@example.com")
        ln = await line(mail_rt, a)
        await _remind(mail_rt, a, ln.id, 7)
        await _remind(mail_rt, a, ln.id, 1)
        assert await runner.run_once(mail_rt) == 2  # both tried, both refused
        pending = await outbox(mail_rt)
        assert all(m.attempts == 1 and m.sent_at is None for m in pending)
        frozen.advance(seconds=6)
        await runner.run_once(mail_rt)  # still down: second attempt, later backoff
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            assert await runner.drain(mail_rt) == 0  # not due yet
            frozen.advance(seconds=30)
            await runner.drain(mail_rt)
            frozen.advance(hours=2)
            assert await runner.drain(mail_rt) == 0
        finally:
            controller.stop()
    finally:
        await mail_rt.close()
    assert len(inbox.messages) == 2
    assert sorted(m["Message-ID"] for m in inbox.messages) == sorted(
        message_id(m.dedupe_key, "notices@op.example") for m in await outbox(rt))
    assert all(m.sent_at is not None for m in await outbox(rt))


def test_smtp_without_a_host_refuses_to_start_in_production() -> None:
    s = Settings(environment="production", email_adapter="smtp", smtp_host="")
    assert "OPENMVNO_EMAIL_ADAPTER=smtp needs OPENMVNO_SMTP_HOST (the SMTP server)" in s.problems()
    assert Settings(environment="development", email_adapter="smtp").smtp_host == "127.0.0.1"
    outbox_only = Settings(environment="production", email_adapter="outbox")
    assert any("OPENMVNO_EMAIL_ADAPTER=outbox" in w for w in outbox_only.deploy_warnings())
    assert outbox_only.problems() == [] or all("SMTP" not in p for p in outbox_only.problems())


def test_a_command_refuses_smtp_without_a_host_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from openmvno.cli import app

    monkeypatch.setenv("OPENMVNO_ENVIRONMENT", "production")
    monkeypatch.setenv("OPENMVNO_EMAIL_ADAPTER", "smtp")
    monkeypatch.setenv("OPENMVNO_SMTP_HOST", "")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if "OPENMVNO_SMTP_HOST" in ln]
    assert lines == [
        "configuration: OPENMVNO_EMAIL_ADAPTER=smtp needs OPENMVNO_SMTP_HOST (the SMTP server)"]
