"""Payment providers behind one small port.

A provider creates a payment for an attempt and tells us what the payer must do
next (a hosted page to open, a QR to scan, a bank reference); the outcome comes
back asynchronously as a **signed webhook**, which :meth:`PaymentProvider.parse_webhook`
verifies and normalises. :meth:`PaymentProvider.retrieve` asks the provider directly
(the janitor uses it for attempts stuck without an answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ProviderStatus = Literal["requires_action", "processing", "succeeded", "failed"]


class InvalidSignature(Exception):
    """The webhook was not signed by the provider (or is too old)."""


class UnsupportedEvent(ValueError):
    """A correctly signed event that is not about a payment: acknowledge and ignore it."""


@dataclass(frozen=True)
class ProviderPayment:
    """The provider's view of one payment."""

    reference: str
    status: ProviderStatus
    amount_minor: int
    currency: str
    failure_code: str | None = None
    next_action: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook, normalised."""

    event_id: str
    event_type: str
    payment: ProviderPayment
    raw: dict[str, Any]


class PaymentProvider(Protocol):
    name: str

    async def create(
        self,
        *,
        attempt_id: str,
        amount_minor: int,
        currency: str,
        method: str,
        description: str,
        return_url: str,
    ) -> ProviderPayment:
        """Start a payment; ``next_action`` says what the payer does next."""
        ...

    async def retrieve(self, reference: str) -> ProviderPayment:
        """Current status at the provider."""
        ...

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify the signature and normalise; raises :class:`InvalidSignature`, or
        :class:`UnsupportedEvent` for a signed event about something else."""
        ...
