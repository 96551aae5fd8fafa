"""SMS delivery: a small port, the outbox-only dev adapter, and real ones."""

from __future__ import annotations

from typing import Protocol


class SmsSender(Protocol):
    async def send(self, *, to: str, body: str, dedupe_key: str) -> str:
        """Hand one message to the network; return the provider's message id."""
        ...


class OutboxOnlySms:
    """Development default: the message stays in the outbox (see ``/dev/outbox``)."""

    async def send(self, *, to: str, body: str, dedupe_key: str) -> str:
        return f"outbox:{dedupe_key}"


class SmppElsewhere:
    """``sms_adapter=smpp``: SMS are submitted by ``openmvno smpp`` over its own bind; a
    worker never claims them, so this is never asked to send."""

    async def send(self, *, to: str, body: str, dedupe_key: str) -> str:
        raise RuntimeError("SMS over SMPP are sent by `openmvno smpp`, not by the worker")
