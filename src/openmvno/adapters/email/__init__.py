"""Email delivery: a small port, the outbox-only dev adapter and SMTP."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol


class EmailSender(Protocol):
    async def send(self, *, to: str, subject: str, body: str, dedupe_key: str) -> str: ...


class OutboxOnlyEmail:
    """Development default: the message stays in the outbox (see ``/dev/outbox``)."""

    async def send(self, *, to: str, subject: str, body: str, dedupe_key: str) -> str:
        return f"outbox:{dedupe_key}"


class SmtpEmail:
    """Plain SMTP; the Message-ID is derived from the dedupe key so a resend is recognisable."""

    def __init__(self, host: str, port: int, sender: str) -> None:
        self.host, self.port, self.sender = host, port, sender

    def _send(self, to: str, subject: str, body: str, dedupe_key: str) -> str:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(idstring=dedupe_key.replace(":", "."), domain="openmvno")
        msg.set_content(body)
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            smtp.send_message(msg)
        return str(msg["Message-ID"])

    async def send(self, *, to: str, subject: str, body: str, dedupe_key: str) -> str:
        return await asyncio.to_thread(self._send, to, subject, body, dedupe_key)
