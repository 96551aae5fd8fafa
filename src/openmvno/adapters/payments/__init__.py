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

**Saved cards** (off-session charges for renewals and auto top-up):
:meth:`PaymentProvider.create_customer` makes the payer's customer record once,
:meth:`PaymentProvider.start_card_setup` sends the payer to a hosted page (or gives a
client secret) that saves a card and issues a reusable token,
:meth:`PaymentProvider.retrieve_card_setup` tells how that went (and what was saved:
brand, last four digits, expiry, the token; never the number),
:meth:`PaymentProvider.charge_saved` charges saved cards off-session in a batch (the same
idempotency key never charges twice), and :meth:`PaymentProvider.detach_card` forgets a card.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ProviderStatus = Literal["requires_action", "processing", "succeeded", "failed"]
RefundStatus = Literal["pending", "succeeded", "failed"]
SavedChargeStatus = Literal["succeeded", "declined", "pending"]
SetupStatus = Literal["requires_action", "succeeded", "failed"]


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


class CardRefused(Exception):
    """The provider will not save this card (declined when attached): ``code`` says why
    (``declined``, ``expired``, ...). Passing faults raise anything else."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


@dataclass(frozen=True)
class CardSetup:
    """A card setup started at the provider: where the payer goes next."""

    reference: str
    """The setup's id at the provider (sandbox ``sbs_…``, Stripe ``seti_…``)."""
    next_action: dict[str, Any]
    """``{"type": "redirect", "url": …}`` (a hosted page) or
    ``{"type": "stripe_client_secret", "client_secret": …}`` (Stripe.js / the mobile SDK)."""


@dataclass(frozen=True)
class SavedCardDetails:
    """What the provider keeps of a saved card and tells us: never the number."""

    card_ref: str
    """The reusable token (sandbox ``sbcard_…``, Stripe ``pm_…``)."""
    customer_ref: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class CardSetupResult:
    """How a card setup went: ``card`` once ``succeeded``, ``failure_code`` once ``failed``."""

    reference: str
    status: SetupStatus
    card: SavedCardDetails | None = None
    failure_code: str | None = None


@dataclass(frozen=True)
class SavedCharge:
    """One off-session charge of a saved card."""

    card_ref: str
    customer_ref: str
    amount_minor: int
    currency: str
    idempotency_key: str
    """Sent again, the provider answers with the first charge: never a second one."""
    description: str = ""


@dataclass(frozen=True)
class SavedChargeResult:
    """The provider's answer to one :class:`SavedCharge` (same order as asked).

    ``declined`` is for good for this charge (``decline_code``: ``insufficient_funds``,
    ``expired``, ``declined``, ``authentication_required``, ``card_removed`` …);
    ``pending`` has no outcome yet (ask :meth:`PaymentProvider.retrieve` with
    ``reference`` later)."""

    idempotency_key: str
    status: SavedChargeStatus
    reference: str | None
    decline_code: str | None = None


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

    async def create_customer(self, *, account_id: str, email: str | None = None,
                              name: str | None = None) -> str:
        """The provider's customer for one of our accounts (idempotent per account: asked
        twice, the same customer); returns its reference."""
        ...

    async def start_card_setup(
        self, *, setup_id: str, customer_ref: str, return_url: str
    ) -> CardSetup:
        """Start saving a card for ``customer_ref`` (idempotent per ``setup_id``); the payer
        comes back to ``return_url`` with ``?setup=<setup_id>``."""
        ...

    async def retrieve_card_setup(self, reference: str) -> CardSetupResult:
        """How the setup went; a card refused when attached is ``failed`` with its code."""
        ...

    async def detach_card(self, card_ref: str) -> None:
        """Forget a saved card at the provider (a card already gone is fine)."""
        ...

    async def charge_saved(self, requests: Sequence[SavedCharge]) -> list[SavedChargeResult]:
        """Charge saved cards off-session, one result per request in the same order. A card
        the provider refuses (expired, declined off-session, removed) is a ``declined``
        result with its code; a passing fault (network, 5xx) raises, and asking again with
        the same idempotency keys is safe."""
        ...
