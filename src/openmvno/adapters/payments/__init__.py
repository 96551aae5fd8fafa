"""Payment providers behind one small port.

A provider creates a payment for an attempt and tells us what the payer must do
next (a hosted page to open, a QR to scan, a bank reference); the outcome comes
back asynchronously as a **signed webhook**, which :meth:`PaymentProvider.parse_webhook`
verifies and normalises. :meth:`PaymentProvider.retrieve` asks the provider directly
(the janitor uses it for attempts stuck without an answer).

Money goes back through :meth:`PaymentProvider.refund` (idempotent per key: the same key
never refunds twice) and an unfinished payment is stopped with
:meth:`PaymentProvider.cancel`. Like every provider call, they are made while the caller
holds no database transaction (the worker delivers them from the outbox).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ProviderStatus = Literal["requires_action", "processing", "succeeded", "failed"]
RefundStatus = Literal["pending", "succeeded", "failed"]


class InvalidSignature(Exception):
    """The webhook was not signed by the provider (or is too old)."""


class UnsupportedEvent(ValueError):
    """A correctly signed event that is not about a payment: acknowledge and ignore it."""


class MalformedEvent(ValueError):
    """A correctly signed event whose content we cannot take (a field of the wrong type,
    out of range or too long): refused with a 400, nothing stored."""


class RefundRefused(Exception):
    """The provider said no to a refund for good (the payment was never captured, or is
    already refunded): trying again will not help. Passing faults raise anything else."""


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
class ProviderRefund:
    """The provider's view of one refund."""

    refund_id: str
    status: RefundStatus
    amount_minor: int
    failure_reason: str | None = None


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

    async def cancel(self, reference: str) -> ProviderPayment:
        """Stop a payment the payer has not completed, and return its state afterwards:
        ``failed`` with ``failure_code="cancelled"`` once stopped, or ``succeeded`` when the
        money was already captured (a cancel never undoes a capture: that is a refund)."""
        ...

    async def refund(
        self, reference: str, amount_minor: int, idempotency_key: str
    ) -> ProviderRefund:
        """Pay ``amount_minor`` of a captured payment back to the payer. The same
        ``idempotency_key`` sent again returns the first refund, never a second one.
        Raises :class:`RefundRefused` when the provider refuses for good."""
        ...

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        """Current status of a refund (one still ``pending`` is asked again later)."""
        ...

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify the signature and normalise; raises :class:`InvalidSignature`,
        :class:`MalformedEvent` for a signed event we cannot take, or
        :class:`UnsupportedEvent` for a signed event about something else."""
        ...
