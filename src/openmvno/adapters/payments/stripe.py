"""Stripe behind the payment port: PaymentIntents for card, Alipay and WeChat Pay.

* ``create()`` makes a PaymentIntent (idempotency key ``attempt-<attempt_id>``,
  ``metadata.attempt_id``, ``allowed_payment_method_types=[method]``). Card intents
  are confirmed in the browser by Stripe.js,
  so their next action is ``{"type": "stripe_client_secret", "client_secret": ...}``;
  Alipay / WeChat Pay intents are confirmed at once and carry Stripe's redirect URL
  or QR code.
* ``retrieve()`` maps the intent's status (see :func:`payment_from_intent`).
* ``parse_webhook()`` verifies ``Stripe-Signature`` with ``stripe.Webhook.construct_event``
  and normalises ``payment_intent.*`` events; a signed event with fields we cannot take
  (an amount that is not an integer in range, an over-long id) is :class:`MalformedEvent`.
* ``cancel()`` is ``payment_intents.cancel`` (an intent already captured is returned as
  it is); ``refund()`` is ``refunds.create`` with the caller's idempotency key, so a
  retried refund never pays twice; ``retrieve_refund()`` follows a pending one.

``settings.stripe_api_base`` points the SDK at another server (tests: localstripe).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import stripe

from openmvno.adapters.payments import (
    InvalidSignature,
    MalformedEvent,
    ProviderPayment,
    ProviderRefund,
    ProviderStatus,
    RefundRefused,
    RefundStatus,
    UnsupportedEvent,
    WebhookEvent,
)
from openmvno.config import Settings
from openmvno.fields import MINOR_AMOUNT_MAX

STRIPE_METHODS = ("card", "alipay", "wechat_pay")

DECLINE_CODES: dict[str, str] = {
    "insufficient_funds": "insufficient_funds",
    "card_velocity_exceeded": "limit_exceeded",
    "withdrawal_count_limit_exceeded": "limit_exceeded",
    "expired_card": "expired",
    "payment_intent_authentication_failure": "authentication_failed",
    "authentication_required": "authentication_failed",
}
"""Stripe ``decline_code`` / ``code`` → our failure code; anything else is ``declined``."""


def failure_code(error: Mapping[str, Any] | None) -> str:
    """Our failure code for a PaymentIntent's ``last_payment_error``."""
    if not error:
        return "declined"
    for key in ("decline_code", "code"):
        value = error.get(key)
        if value and value in DECLINE_CODES:
            return DECLINE_CODES[value]
    return "declined"


def _next_action(intent: Mapping[str, Any]) -> dict[str, Any]:
    action = intent.get("next_action") or {}
    kind = action.get("type")
    if kind == "redirect_to_url":
        return {"type": "redirect", "url": action["redirect_to_url"]["url"]}
    if kind == "alipay_handle_redirect":
        return {"type": "redirect", "url": action["alipay_handle_redirect"]["url"]}
    if kind == "wechat_pay_display_qr_code":
        qr = action["wechat_pay_display_qr_code"]
        return {
            "type": "qr",
            "data": qr.get("data"),
            "image_data_url": qr.get("image_data_url"),
            "url": qr.get("hosted_instructions_url"),
        }
    return {"type": "stripe_client_secret", "client_secret": intent.get("client_secret")}


_ID = re.compile(r"^[\x21-\x7e]{1,120}$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


def _checked_intent(intent: Mapping[str, Any]) -> None:
    """Refuse (``MalformedEvent``) the fields of an intent that no column can hold."""
    ident, amount, currency = intent.get("id"), intent.get("amount"), intent.get("currency")
    if not isinstance(ident, str) or not _ID.match(ident):
        raise MalformedEvent("the PaymentIntent id is not a Stripe id")
    if amount is not None and (
        type(amount) is not int or not 0 <= amount <= MINOR_AMOUNT_MAX
    ):
        raise MalformedEvent("the PaymentIntent amount is not an integer in range")
    if currency is not None and (not isinstance(currency, str) or not _CURRENCY.match(currency)):
        raise MalformedEvent("the PaymentIntent currency is not a currency code")


def refund_from_stripe(refund: Mapping[str, Any]) -> ProviderRefund:
    """Normalise a Refund: ``succeeded``; ``failed`` / ``canceled`` → failed; anything
    else (``pending``, ``requires_action``) → pending."""
    raw = refund.get("status")
    status: RefundStatus = (
        "succeeded" if raw == "succeeded" else "failed" if raw in ("failed", "canceled")
        else "pending"
    )
    return ProviderRefund(
        refund_id=str(refund["id"]), status=status,
        amount_minor=int(refund.get("amount") or 0),
        failure_reason=refund.get("failure_reason") if status == "failed" else None,
    )


def _refused(exc: stripe.StripeError) -> bool:
    """A request Stripe will refuse every time (400/404: already refunded, not captured,
    amount too large); rate limits, 409 idempotency clashes and 5xx are worth retrying."""
    return isinstance(exc, stripe.InvalidRequestError) and exc.http_status in (400, 404)


def payment_from_intent(intent: Mapping[str, Any], *, failed: bool = False) -> ProviderPayment:
    """Normalise a PaymentIntent (a plain dict).

    ``succeeded`` → succeeded; ``processing`` → processing; ``requires_action`` /
    ``requires_confirmation`` / ``requires_capture`` and ``requires_payment_method``
    without an error → requires_action; ``requires_payment_method`` after a failure
    (``last_payment_error``) → failed; ``canceled`` → failed (``expired`` when Stripe
    abandoned it, else ``cancelled``). ``failed=True`` (a ``payment_failed`` event)
    forces failed."""
    raw_status = intent.get("status")
    error = intent.get("last_payment_error")
    status: ProviderStatus
    code: str | None = None
    if raw_status == "succeeded":
        status = "succeeded"
    elif raw_status == "processing":
        status = "processing"
    elif raw_status == "canceled":
        status = "failed"
        reason = intent.get("cancellation_reason")
        code = "expired" if reason in (None, "abandoned", "automatic") else "cancelled"
    elif failed or (raw_status == "requires_payment_method" and error):
        status = "failed"
        code = failure_code(error)
    else:
        status = "requires_action"
    return ProviderPayment(
        reference=str(intent["id"]),
        status=status,
        amount_minor=int(intent.get("amount") or 0),
        currency=str(intent.get("currency") or "").upper(),
        failure_code=code,
        next_action=_next_action(intent) if status == "requires_action" else {},
    )


class StripeProvider:
    """Stripe through the official SDK (``StripeClient``, async HTTPX transport)."""

    name = "stripe"

    def __init__(
        self,
        settings: Settings,
        *,
        client: stripe.StripeClient | None = None,
        method_types_param: str = "allowed_payment_method_types",
    ) -> None:
        """``method_types_param``: the SDK pins API ``2026-10-28.endive``, where
        ``payment_method_types`` is no longer writable (400
        ``payment_method_types_no_longer_supported``) and ``allowed_payment_method_types``
        replaces it; fakes that predate it (localstripe) need ``"payment_method_types"``."""
        self.settings = settings
        self.method_types_param = method_types_param
        if client is None:
            kwargs: dict[str, Any] = {"http_client": stripe.HTTPXClient(), "max_network_retries": 2}
            if settings.stripe_api_base:
                base = settings.stripe_api_base.rstrip("/")
                kwargs["base_addresses"] = {"api": base}
            client = stripe.StripeClient(settings.stripe_api_key.get_secret_value(), **kwargs)
        self.client = client

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
        """Create (idempotently per attempt) a PaymentIntent."""
        if method not in STRIPE_METHODS:
            raise ValueError(f"Stripe is not set up for {method!r} payments")
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": currency.lower(),
            self.method_types_param: [method],
            # description travels as metadata (localstripe rejects the top-level field)
            "metadata": {"attempt_id": str(attempt_id), "description": description[:200]},
        }
        if method in ("alipay", "wechat_pay"):
            params.update(
                confirm=True,
                payment_method_data={"type": method},
                return_url=return_url,
            )
            if method == "wechat_pay":
                params["payment_method_options"] = {"wechat_pay": {"client": "web"}}
        intent = await self.client.v1.payment_intents.create_async(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"attempt-{attempt_id}"},
        )
        return payment_from_intent(intent.to_dict())

    async def retrieve(self, reference: str) -> ProviderPayment:
        """The PaymentIntent's current status."""
        intent = await self.client.v1.payment_intents.retrieve_async(reference)
        return payment_from_intent(intent.to_dict())

    async def cancel(self, reference: str) -> ProviderPayment:
        """``payment_intents.cancel``; an intent Stripe will not cancel (already captured,
        or cancelled before) is returned as it stands."""
        try:
            intent = await self.client.v1.payment_intents.cancel_async(reference)
        except stripe.InvalidRequestError as exc:
            if exc.http_status != 400:
                raise
            return await self.retrieve(reference)
        payment = payment_from_intent(intent.to_dict())
        if payment.status == "failed":
            # We cancelled it; without a cancellation_reason Stripe's own mapping says expired.
            return ProviderPayment(
                reference=payment.reference, status="failed", amount_minor=payment.amount_minor,
                currency=payment.currency, failure_code="cancelled",
            )
        return payment

    async def refund(
        self, reference: str, amount_minor: int, idempotency_key: str
    ) -> ProviderRefund:
        """``refunds.create`` for the PaymentIntent, with ``idempotency_key``; a refusal
        Stripe would repeat (400/404) is :class:`RefundRefused`."""
        try:
            refund = await self.client.v1.refunds.create_async(
                params={"payment_intent": reference, "amount": amount_minor},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            if _refused(exc):
                raise RefundRefused(str(exc.user_message or exc)) from exc
            raise
        return refund_from_stripe(refund.to_dict())

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        """The Refund's current status."""
        refund = await self.client.v1.refunds.retrieve_async(refund_id)
        return refund_from_stripe(refund.to_dict())

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify ``Stripe-Signature`` and normalise a ``payment_intent.*`` event.

        Raises :class:`InvalidSignature`, or :class:`UnsupportedEvent` for a signed
        event about something else (answer 2xx and ignore it)."""
        header = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), "")
        secret = self.settings.stripe_webhook_secret.get_secret_value()
        try:
            stripe.WebhookSignature.verify_header(
                body, header, secret, stripe.Webhook.DEFAULT_TOLERANCE
            )
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise InvalidSignature(str(exc)) from exc
        try:
            raw = json.loads(body, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise MalformedEvent("the event is not JSON we can read") from exc
        if not isinstance(raw, dict):
            raise MalformedEvent("the event is not a JSON object")
        data = raw.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict) or obj.get("object") != "payment_intent":
            raise UnsupportedEvent(f"not a PaymentIntent event: {str(raw.get('type'))[:80]}")
        event_id, event_type = raw.get("id"), raw.get("type")
        if not isinstance(event_id, str) or not _ID.match(event_id):
            raise MalformedEvent("the event id is not a Stripe id")
        if not isinstance(event_type, str) or not _ID.match(event_type) or len(event_type) > 80:
            raise MalformedEvent("the event type is not a Stripe event type")
        _checked_intent(obj)
        payment = payment_from_intent(obj, failed=event_type == "payment_intent.payment_failed")
        return WebhookEvent(event_id=event_id, event_type=event_type, payment=payment, raw=raw)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")
