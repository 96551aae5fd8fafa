"""Email over SMTP (smtplib in a worker thread): STARTTLS and login when configured, one
message per outbox row, its Message-ID derived from the row's dedupe key — a message sent
again after a crash between the hand-over and the row being marked sent carries the same
Message-ID, so the receiving side can tell it is the same mail."""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime

from openmvno import clock
from openmvno.config import Settings

_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_]")


def message_id(dedupe_key: str, sender: str) -> str:
    """The Message-ID of the mail of one outbox row (the same each time it is sent)."""
    domain = sender.rpartition("@")[2] or "openmvno"
    return f"<{_UNSAFE.sub('.', dedupe_key)}@{domain}>"


class SmtpEmail:
    """An SMTP server (``OPENMVNO_EMAIL_ADAPTER=smtp``): ``smtp_host``/``smtp_port``, From
    ``smtp_sender``, optional STARTTLS (``smtp_starttls``, the certificate checked against
    the system's CAs or ``smtp_ca_file``) and login (``smtp_user``/``smtp_password``)."""

    def __init__(
        self, host: str, port: int, sender: str, *, user: str = "", password: str = "",
        starttls: bool = False, ca_file: str = "", timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.user, self.password = user, password
        self.starttls, self.ca_file, self.timeout = starttls, ca_file, timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpEmail:
        return cls(
            settings.smtp_host, settings.smtp_port, settings.smtp_sender,
            user=settings.smtp_user, password=settings.smtp_password.get_secret_value(),
            starttls=settings.smtp_starttls, ca_file=settings.smtp_ca_file,
            timeout=settings.smtp_timeout_seconds,
        )

    def build(
        self, *, to: str, subject: str, body: str, dedupe_key: str, language: str | None = None
    ) -> EmailMessage:
        """The message as it goes on the wire (headers From, To, Subject, Date,
        Message-ID, Content-Language; a UTF-8 text body)."""
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = format_datetime(clock.now())
        msg["Message-ID"] = message_id(dedupe_key, self.sender)
        msg.set_content(body)  # (clears Content-* headers: Content-Language after it)
        if language:
            msg["Content-Language"] = language
        return msg

    def _deliver(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                context = ssl.create_default_context(cafile=self.ca_file or None)
                smtp.starttls(context=context)
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(msg)

    async def send(
        self, *, to: str, subject: str, body: str, dedupe_key: str, language: str | None = None
    ) -> str:
        msg = self.build(to=to, subject=subject, body=body, dedupe_key=dedupe_key,
                         language=language)
        await asyncio.to_thread(self._deliver, msg)
        return str(msg["Message-ID"])
