"""Email delivery: a small port, the outbox-only dev adapter and SMTP (:mod:`.smtp`)."""

from __future__ import annotations

from typing import Protocol

from openmvno.adapters.email.smtp import SmtpEmail


class EmailSender(Protocol):
    async def send(
        self, *, to: str, subject: str, body: str, dedupe_key: str, language: str | None = None
    ) -> str:
        """Hand one message over; ``language`` (``zh-CN``, ``en``) is its Content-Language."""
        ...


class OutboxOnlyEmail:
    """Development default: the message stays in the outbox (see ``/dev/outbox``)."""

    async def send(
        self, *, to: str, subject: str, body: str, dedupe_key: str, language: str | None = None
    ) -> str:
        return f"outbox:{dedupe_key}"


__all__ = ["EmailSender", "OutboxOnlyEmail", "SmtpEmail"]
