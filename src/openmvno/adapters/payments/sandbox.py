"""The built-in **sandbox** payment service: behaves like a real provider.

``create()`` records a payment and sends the payer to a hosted page
(``/sandbox/pay/{reference}``, see :mod:`openmvno.adapters.payments.sandbox_pages`);
the page takes a test card, a simulated Alipay / WeChat Pay scan or a simulated bank
transfer; the outcome reaches OpenMVNO only as an asynchronous **signed webhook**
POSTed to ``{public_url}/webhooks/sandbox`` by :func:`deliver_due_webhooks` (the
worker calls it every round), retried with backoff.

Signature header: ``Sandbox-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">``
keyed with ``settings.sandbox_webhook_secret``.

``cancel()`` stops a payment still waiting for the payer (its page then shows it failed);
``refund()`` pays a captured payment back, recorded in ``sandbox_refunds`` once per
idempotency key, never above what was captured.

The sandbox writes its own table in its **own transaction**: it stands for a company
outside our database, and like any provider it is called while the caller holds no
transaction (see ``payments.service.pay``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.adapters.payments import (
    CardSetup,
    CardSetupResult,
    InvalidSignature,
    MalformedEvent,
    ProviderPayment,
    ProviderRefund,
    ProviderStatus,
    RefundRefused,
    RefundStatus,
    SavedCharge,
    SavedChargeResult,
    WebhookEvent,
)
from openmvno.adapters.payments.sandbox_models import SandboxCharge, SandboxPayment, SandboxRefund
from openmvno.db import unit_of_work
from openmvno.fields import Currency, ExternalId, MinorAmount, text
from openmvno.i18n import N_
from openmvno.runtime import Runtime

log = logging.getLogger("openmvno.sandbox")

SIGNATURE_HEADER = "Sandbox-Signature"
TOLERANCE_SECONDS = 300
WEBHOOK_MAX_ATTEMPTS = 8
CLAIM_SECONDS = 120
SANDBOX_METHODS = ("card", "alipay", "wechat_pay", "bank_transfer")

SANDBOX_BANK = {
    "bank": "OpenMVNO Sandbox Bank",
    "account_number": "6222 0200 0000 0000 001",
    "branch": "Sandbox Branch",
}
"""Where a (simulated) bank transfer goes; the beneficiary is the operator's name."""


# ---------------------------------------------------------------- test cards


@dataclass(frozen=True)
class TestCard:
    number: str
    outcome: str
    """``succeeded``, ``failed``, ``3ds`` (challenge first) or ``never`` (no answer)."""
    failure_code: str | None = None
    label: str = ""


TEST_CARDS: dict[str, TestCard] = {
    c.number: c
    for c in (
        TestCard("4242424242424242", "succeeded", label="Visa: success"),
        TestCard("5555555555554444", "succeeded", label="Mastercard: success"),
        TestCard("6200000000000005", "succeeded", label="UnionPay: success"),
        TestCard("4000000000009995", "failed", "insufficient_funds", "insufficient funds"),
        TestCard("4000000000009987", "failed", "limit_exceeded", "limit exceeded"),
        TestCard("4000000000000002", "failed", "declined", "declined"),
        TestCard("4000000000000069", "failed", "expired", "expired card"),
        TestCard("4000002760003184", "3ds", label="3-D Secure challenge"),
        TestCard("4000000000000259", "never", label="provider never answers"),
    )
}


def card_brand(number: str) -> str:
    """Brand from the first digits (display only)."""
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    if number.startswith("62"):
        return "unionpay"
    return "card"


def luhn_ok(number: str) -> bool:
    """The Luhn check digit is right."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class CardError(ValueError):
    """A card form field is wrong; ``message`` is a catalog key."""

    def __init__(self, field: str, message: str, **params: Any) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.params = params


_EXPIRY = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*$")


@dataclass(frozen=True)
class CheckedCard:
    brand: str
    last4: str
    card: TestCard


def check_card(number: str, expiry: str, cvc: str) -> CheckedCard:
    """Validate a card form (Luhn, expiry in the future, CVC); raises :class:`CardError`.

    Only the brand and last four digits leave this function."""
    digits, brand, _month, _year = validated_card(number, expiry, cvc)
    card = TEST_CARDS.get(digits)
    if card is None:
        raise CardError(
            "card_number",
            N_("This is a sandbox: only the documented test card numbers work."),
        )
    return CheckedCard(brand=brand, last4=digits[-4:], card=card)


def validated_card(number: str, expiry: str, cvc: str) -> tuple[str, str, int, int]:
    """Luhn, expiry in the future, CVC length; returns (digits, brand, month, year) or
    raises :class:`CardError`. The digits never leave the caller."""
    digits = re.sub(r"[\s-]", "", number)
    if not digits.isdigit() or not 12 <= len(digits) <= 19 or not luhn_ok(digits):
        raise CardError("card_number", N_("The card number is not valid."))
    m = _EXPIRY.match(expiry)
    if not m or not 1 <= int(m.group(1)) <= 12:
        raise CardError("card_expiry", N_("Give the expiry date as MM/YY."))
    month, year = int(m.group(1)), int(m.group(2))
    year = year + 2000 if year < 100 else year
    now = clock.now()
    if (year, month) < (now.year, now.month):
        raise CardError("card_expiry", N_("This card has expired."))
    brand = card_brand(digits)
    cvc_len = 4 if brand == "amex" else 3
    if not (cvc.strip().isdigit() and len(cvc.strip()) == cvc_len):
        raise CardError("card_cvc", N_("The security code (CVC) is {n} digits."), n=cvc_len)
    return digits, brand, month, year


# ---------------------------------------------------------------- signatures


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Sandbox-Signature`` header value for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(body: bytes, header: str, secret: str, *, now: int | None = None) -> None:
    """Check a ``Sandbox-Signature`` header; raises :class:`InvalidSignature`."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError) as exc:
        raise InvalidSignature("missing timestamp") from exc
    current = int(time.time()) if now is None else now
    if abs(current - t) > TOLERANCE_SECONDS:
        raise InvalidSignature("timestamp outside the tolerance")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
        raise InvalidSignature("signature mismatch")


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return ""


# ---------------------------------------------------------------- the provider


def _payment(row: SandboxPayment, public_url: str) -> ProviderPayment:
    status: ProviderStatus = row.status  # type: ignore[assignment]
    return ProviderPayment(
        reference=row.reference,
        status=status,
        amount_minor=row.amount_minor,
        currency=row.currency,
        failure_code=row.failure_code,
        next_action=next_action(row, public_url) if status == "requires_action" else {},
    )


def page_url(public_url: str, reference: str) -> str:
    return f"{public_url.rstrip('/')}/sandbox/pay/{reference}"


def next_action(row: SandboxPayment, public_url: str) -> dict[str, Any]:
    """What the payer does next: always open the hosted page; extras per method."""
    url = page_url(public_url, row.reference)
    action: dict[str, Any] = {"type": "redirect", "url": url}
    if row.method in ("alipay", "wechat_pay"):
        action["qr_url"] = f"{url}/scan"
    elif row.method == "bank_transfer":
        action["bank_transfer"] = {"reference": row.reference, **SANDBOX_BANK}
    return action


def reference_for(rt: Runtime, attempt_id: str) -> str:
    """The payment reference of an attempt: stable, and unguessable without the secret key
    (the hosted page URL is the payer's only credential)."""
    mac = hmac.new(rt.secret_key.encode(), f"sandbox:{attempt_id}".encode(), hashlib.sha256)
    return f"sbx_{mac.hexdigest()[:24]}"


async def _persist(rt: Runtime, row: SandboxPayment) -> None:
    """Insert the payment unless this attempt already has one."""
    try:
        async with unit_of_work(rt.sessions) as session:
            exists = await session.scalar(
                select(SandboxPayment.id).where(SandboxPayment.reference == row.reference)
            )
            if exists is None:
                session.add(row)
    except IntegrityError:
        pass  # created concurrently for the same attempt
    except Exception:
        log.exception("sandbox payment not recorded", extra={"reference": row.reference})
        raise


class SandboxProvider:
    """The sandbox behind the :class:`~openmvno.adapters.payments.PaymentProvider` port."""

    name = "sandbox"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @property
    def _public_url(self) -> str:
        return self.rt.settings.public_url

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
        """Register the payment and point the payer to the hosted page.

        The reference is derived from the attempt id (idempotent: the same attempt
        gets the same payment); the row is written in the sandbox's own transaction."""
        if method not in SANDBOX_METHODS:
            raise ValueError(f"the sandbox does not take {method!r} payments")
        if amount_minor <= 0:
            raise ValueError("amount_minor must be positive")
        row = SandboxPayment(
            reference=reference_for(self.rt, str(attempt_id)),
            attempt_id=str(attempt_id),
            amount_minor=amount_minor,
            currency=currency.upper(),
            method=method,
            description=description[:200],
            status="requires_action",
            stage="pay",
            return_url=return_url,
            webhook_attempts=0,
            webhook_last_error="",
        )
        payment = _payment(row, self._public_url)
        await _persist(self.rt, row)
        return payment

    async def retrieve(self, reference: str) -> ProviderPayment:
        """Current status; raises ``LookupError`` for an unknown reference."""
        async with self.rt.sessions() as session:
            if reference.startswith("sbch_"):
                charge = await session.get(SandboxCharge, reference)
                if charge is None:
                    raise LookupError(f"no sandbox charge {reference!r}")
                return ProviderPayment(
                    reference=charge.reference,
                    status="succeeded" if charge.status == "succeeded" else "failed",
                    amount_minor=charge.amount_minor, currency=charge.currency,
                    failure_code=charge.decline_code,
                )
            row = await session.scalar(
                select(SandboxPayment).where(SandboxPayment.reference == reference)
            )
            if row is None:
                raise LookupError(f"no sandbox payment {reference!r}")
            return _payment(row, self._public_url)

    async def cancel(self, reference: str) -> ProviderPayment:
        """Stop a payment the payer has not finished (its page then says it failed);
        one already captured stays captured and is returned as ``succeeded``. Raises
        ``LookupError`` for an unknown reference."""
        async with unit_of_work(self.rt.sessions) as session:
            row = await session.scalar(
                select(SandboxPayment)
                .where(SandboxPayment.reference == reference)
                .with_for_update()
            )
            if row is None:
                raise LookupError(f"no sandbox payment {reference!r}")
            if row.status in ("requires_action", "processing"):
                settle(row, "failed", "cancelled")
            return _payment(row, self._public_url)

    async def refund(
        self, reference: str, amount_minor: int, idempotency_key: str
    ) -> ProviderRefund:
        """Pay back ``amount_minor`` of a captured payment, once per ``idempotency_key``
        (asked again, the first refund is returned). Refused (:class:`RefundRefused`) for
        a payment not captured, or beyond what is left to refund."""
        try:
            async with unit_of_work(self.rt.sessions) as session:
                done = await _refund_by_key(session, idempotency_key)
                if done is not None:
                    return done
                row = await session.scalar(
                    select(SandboxPayment)
                    .where(SandboxPayment.reference == reference)
                    .with_for_update()
                )
                if row is None or row.status != "succeeded":
                    raise RefundRefused(f"payment {reference!r} was not captured")
                refunded = await session.scalar(
                    select(func.coalesce(func.sum(SandboxRefund.amount_minor), 0))
                    .where(SandboxRefund.reference == reference)
                )
                if amount_minor <= 0 or int(refunded or 0) + amount_minor > row.amount_minor:
                    raise RefundRefused(
                        f"refund of {amount_minor} exceeds what is left of {reference!r}"
                    )
                refund = SandboxRefund(
                    refund_id=f"sbr_{secrets.token_hex(12)}", reference=reference,
                    idempotency_key=idempotency_key, amount_minor=amount_minor,
                    currency=row.currency, status="succeeded",
                )
                session.add(refund)
                await session.flush()
                return _refund(refund)
        except IntegrityError:
            # The same key raced in from another process: that refund is the one.
            async with self.rt.sessions() as session:
                done = await _refund_by_key(session, idempotency_key)
            if done is None:
                raise
            return done

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        """A refund's status; raises ``LookupError`` for an unknown id."""
        async with self.rt.sessions() as session:
            row = await session.scalar(
                select(SandboxRefund).where(SandboxRefund.refund_id == refund_id)
            )
            if row is None:
                raise LookupError(f"no sandbox refund {refund_id!r}")
            return _refund(row)

    # --- saved cards (see openmvno.adapters.payments.sandbox_cards)

    async def create_customer(
        self, *, account_id: str, email: str | None = None, name: str | None = None
    ) -> str:
        """The sandbox's customer for an account: derived from its id (idempotent)."""
        from openmvno.adapters.payments import sandbox_cards

        return sandbox_cards.customer_ref(self.rt, account_id)

    async def start_card_setup(
        self, *, setup_id: str, customer_ref: str, return_url: str
    ) -> CardSetup:
        """Record a setup and send the payer to the hosted "save a card" page."""
        from openmvno.adapters.payments import sandbox_cards

        return await sandbox_cards.start_card_setup(
            self.rt, setup_id=setup_id, customer=customer_ref, return_url=return_url
        )

    async def retrieve_card_setup(self, reference: str) -> CardSetupResult:
        from openmvno.adapters.payments import sandbox_cards

        return await sandbox_cards.retrieve_card_setup(self.rt, reference)

    async def detach_card(self, card_ref: str) -> None:
        from openmvno.adapters.payments import sandbox_cards

        await sandbox_cards.detach_card(self.rt, card_ref)

    async def charge_saved(self, requests: Sequence[SavedCharge]) -> list[SavedChargeResult]:
        """Off-session charges, one statement per batch, idempotent per key."""
        from openmvno.adapters.payments import sandbox_cards

        return await sandbox_cards.charge_saved(self.rt, requests)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify ``Sandbox-Signature`` (5 minutes tolerance) and normalise."""
        secret = self.rt.settings.sandbox_webhook_secret.get_secret_value()
        verify(body, _header(headers, SIGNATURE_HEADER), secret)
        return event_from_body(body)


def _refund(row: SandboxRefund) -> ProviderRefund:
    status: RefundStatus = "succeeded" if row.status == "succeeded" else "pending"
    return ProviderRefund(refund_id=row.refund_id, status=status, amount_minor=row.amount_minor)


async def _refund_by_key(session: AsyncSession, key: str) -> ProviderRefund | None:
    row = await session.scalar(select(SandboxRefund).where(SandboxRefund.idempotency_key == key))
    return _refund(row) if row is not None else None


class _EventData(BaseModel):
    model_config = ConfigDict(extra="allow")

    reference: ExternalId
    status: ProviderStatus
    amount_minor: MinorAmount
    currency: Currency
    failure_code: Annotated[str, text(40)] | None = None


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: ExternalId
    type: Annotated[str, text(80, min_length=1)]
    data: _EventData


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def event_from_body(body: bytes) -> WebhookEvent:
    """Parse a signed event strictly: ``amount_minor`` a JSON integer in range (not
    ``1e400``, ``Infinity``), ids printable ASCII within their columns; anything else
    is :class:`MalformedEvent` (a 400, nothing stored)."""
    try:
        raw = json.loads(body, parse_constant=_no_constant)
        event = _Event.model_validate(raw)
    except (ValueError, RecursionError, ValidationError) as exc:
        raise MalformedEvent("malformed event body") from exc
    data = event.data
    payment = ProviderPayment(
        reference=data.reference,
        status=data.status,
        amount_minor=data.amount_minor,
        currency=data.currency,
        failure_code=data.failure_code,
    )
    return WebhookEvent(event_id=event.id, event_type=event.type, payment=payment, raw=raw)


# ---------------------------------------------------------------- outcomes


def settle(row: SandboxPayment, status: str, failure_code: str | None = None) -> None:
    """Move a payment to its outcome and queue the webhook (once per outcome)."""
    if row.status in ("succeeded", "failed"):
        return
    row.status = status
    row.failure_code = failure_code if status == "failed" else None
    if status in ("succeeded", "failed"):
        row.webhook_event_id = f"evt_{secrets.token_hex(12)}"
        row.webhook_due_at = clock.now()
        row.webhook_attempts = 0
        row.webhook_last_error = ""


def event_body(row: SandboxPayment) -> bytes:
    """The JSON body of a payment's outcome event."""
    payload = {
        "id": row.webhook_event_id,
        "type": f"payment.{row.status}",
        "created": int(row.updated_at.timestamp()) if row.updated_at else None,
        "data": {
            "reference": row.reference,
            "attempt_id": row.attempt_id,
            "status": row.status,
            "amount_minor": row.amount_minor,
            "currency": row.currency,
            "method": row.method,
            "failure_code": row.failure_code,
        },
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def webhook_backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(10 * 2 ** (attempts - 1), 3600))


async def _claim(rt: Runtime, limit: int) -> list[tuple[str, bytes]]:
    now = clock.now()
    async with unit_of_work(rt.sessions) as session:
        rows = list(
            (
                await session.scalars(
                    select(SandboxPayment)
                    .where(
                        SandboxPayment.webhook_due_at.is_not(None),
                        SandboxPayment.webhook_due_at <= now,
                    )
                    .order_by(SandboxPayment.webhook_due_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
        )
        claimed: list[tuple[str, bytes]] = []
        for row in rows:
            row.webhook_attempts += 1
            row.webhook_due_at = now + timedelta(seconds=CLAIM_SECONDS)
            claimed.append((row.reference, event_body(row)))
        return claimed


async def _finish(rt: Runtime, reference: str, error: str | None) -> None:
    async with unit_of_work(rt.sessions) as session:
        row = await session.scalar(
            select(SandboxPayment).where(SandboxPayment.reference == reference)
        )
        if row is None:
            return
        if error is None:
            row.webhook_due_at = None
            row.webhook_delivered_at = clock.now()
            row.webhook_last_error = ""
        else:
            row.webhook_last_error = error[:300]
            row.webhook_due_at = (
                None
                if row.webhook_attempts >= WEBHOOK_MAX_ATTEMPTS
                else clock.now() + webhook_backoff(row.webhook_attempts)
            )


async def deliver_due_webhooks(rt: Runtime, limit: int = 50) -> int:
    """POST every due sandbox webhook (signed) to ``{public_url}/webhooks/sandbox``.

    A 2xx answer marks it delivered; anything else is retried with backoff, at most
    :data:`WEBHOOK_MAX_ATTEMPTS` times. Tests inject ``rt.extras["http_transport"]``.
    Returns how many deliveries were attempted."""
    claimed = await _claim(rt, limit)
    if not claimed:
        return 0
    url = f"{rt.settings.public_url.rstrip('/')}/webhooks/sandbox"
    secret = rt.settings.sandbox_webhook_secret.get_secret_value()
    transport: httpx.AsyncBaseTransport | None = rt.extras.get("http_transport")
    async with httpx.AsyncClient(transport=transport, timeout=10.0) as client:
        for reference, body in claimed:
            error: str | None = None
            try:
                response = await client.post(
                    url,
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        SIGNATURE_HEADER: sign(body, secret),
                        "User-Agent": "OpenMVNO-Sandbox-Webhooks/1",
                    },
                )
                if not 200 <= response.status_code < 300:
                    error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if error:
                log.warning("sandbox webhook failed", extra={"reference": reference})
            await _finish(rt, reference, error)
    return len(claimed)


async def pending_webhooks(rt: Runtime) -> int:
    """How many sandbox webhooks are still queued (for status pages and tests)."""
    async with rt.sessions() as session:
        rows = await session.scalars(
            select(SandboxPayment.id).where(SandboxPayment.webhook_due_at.is_not(None))
        )
        return len(rows.all())


__all__ = [
    "SIGNATURE_HEADER",
    "TEST_CARDS",
    "CardError",
    "SandboxProvider",
    "check_card",
    "deliver_due_webhooks",
    "pending_webhooks",
    "sign",
    "verify",
]
