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

Saved cards: ``create_customer()`` makes one Customer per account (idempotency key
``customer-<account id>``, stored by the caller); ``start_card_setup()`` makes a
SetupIntent (``usage=off_session``) whose client secret Stripe.js or the mobile SDK
confirms; ``retrieve_card_setup()`` reads it back and attaches its PaymentMethod to the
customer if it is not yet (a card Stripe declines at attach is a ``failed`` setup);
``save_payment_method()`` attaches a PaymentMethod created client-side directly;
``charge_saved()`` makes off-session PaymentIntents (``confirm=True, off_session=True``,
the caller's idempotency key, ``metadata.kind = "saved_charge"``) with at most
``stripe_charge_concurrency`` requests in flight; a card error is a ``declined`` result,
anything else raises. Webhooks about those intents are acknowledged and ignored
(``charge_cards`` records the answer it got).

``settings.stripe_api_base`` points the SDK at another server (tests: localstripe).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import stripe

from openmvno.adapters.payments import (
    CardRefused,
    CardSetup,
    CardSetupResult,
    InvalidSignature,
    MalformedEvent,
    ProviderPayment,
    ProviderRefund,
    ProviderStatus,
    RefundRefused,
    RefundStatus,
    SavedCardDetails,
    SavedCharge,
    SavedChargeResult,
    SetupStatus,
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


SAVED_CHARGE = "saved_charge"
"""``metadata.kind`` of the off-session PaymentIntents ``charge_saved`` makes."""


def decline_code(error: stripe.StripeError) -> str:
    """Our decline code for a refused card (``CardError`` and friends)."""
    body = getattr(error, "error", None)
    found: dict[str, Any] = {}
    for key in ("decline_code", "code"):
        value = getattr(body, key, None) if body is not None else None
        if value:
            found[key] = value
    code = failure_code(found)
    if code == "declined" and found.get("code") == "authentication_required":
        return "authentication_required"
    return code


def card_details(pm: Mapping[str, Any], customer_ref: str) -> SavedCardDetails:
    card = pm.get("card") or {}
    return SavedCardDetails(
        card_ref=str(pm["id"]), customer_ref=customer_ref,
        brand=str(card.get("brand") or "card")[:20], last4=str(card.get("last4") or "")[-4:],
        exp_month=int(card.get("exp_month") or 0), exp_year=int(card.get("exp_year") or 0),
    )


def saved_charge_result(key: str, intent: Mapping[str, Any]) -> SavedChargeResult:
    """An off-session PaymentIntent's answer: ``succeeded``; ``processing`` → pending;
    ``requires_action`` (the bank wants the payer, who is not there) → declined
    ``authentication_required``; a failure → declined with its code."""
    status = intent.get("status")
    ref = str(intent["id"])
    if status == "succeeded":
        return SavedChargeResult(key, "succeeded", ref)
    if status == "processing":
        return SavedChargeResult(key, "pending", ref)
    if status in ("requires_action", "requires_confirmation"):
        return SavedChargeResult(key, "declined", ref, "authentication_required")
    return SavedChargeResult(key, "declined", ref, failure_code(intent.get("last_payment_error")))


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

    # --- saved cards

    async def create_customer(
        self, *, account_id: str, email: str | None = None, name: str | None = None
    ) -> str:
        """One Customer per account (idempotency key ``customer-<account id>``)."""
        params: dict[str, Any] = {"metadata": {"account_id": account_id}}
        if email:
            params["email"] = email
        customer = await self.client.v1.customers.create_async(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"customer-{account_id}"},
        )
        return str(customer.id)

    async def start_card_setup(
        self, *, setup_id: str, customer_ref: str, return_url: str
    ) -> CardSetup:
        """A SetupIntent for off-session use; Stripe.js / the mobile SDK confirms it."""
        params: dict[str, Any] = {
            "customer": customer_ref, "usage": "off_session",
            self.method_types_param: ["card"], "metadata": {"setup_id": setup_id},
        }
        intent = await self.client.v1.setup_intents.create_async(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"setup-{setup_id}"},
        )
        return CardSetup(
            reference=str(intent.id),
            next_action={"type": "stripe_client_secret", "client_secret": intent.client_secret,
                         "return_url": return_url},
        )

    async def save_payment_method(self, *, customer_ref: str, card_ref: str) -> SavedCardDetails:
        """Attach a PaymentMethod made client-side to the customer; a card Stripe declines
        is :class:`CardRefused`."""
        try:
            pm = await self.client.v1.payment_methods.attach_async(
                card_ref, params={"customer": customer_ref}
            )
        except stripe.CardError as exc:
            raise CardRefused(decline_code(exc), str(exc.user_message or exc)) from exc
        return card_details(pm.to_dict(), customer_ref)

    async def retrieve_card_setup(self, reference: str) -> CardSetupResult:
        """The SetupIntent's outcome; once it succeeded its card is attached to the customer
        (if confirming did not already) and described."""
        intent = (await self.client.v1.setup_intents.retrieve_async(reference)).to_dict()
        raw = intent.get("status")
        error = intent.get("last_setup_error")
        status: SetupStatus
        if raw == "succeeded":
            status = "succeeded"
        elif raw == "canceled" or (raw == "requires_payment_method" and error):
            return CardSetupResult(reference, "failed", failure_code=failure_code(error))
        else:
            status = "requires_action"
            return CardSetupResult(reference, status)
        pm_id = intent.get("payment_method")
        customer = intent.get("customer")
        if isinstance(pm_id, dict):
            pm_id = pm_id.get("id")
        if not pm_id or not customer:
            return CardSetupResult(reference, "failed", failure_code="declined")
        pm = (await self.client.v1.payment_methods.retrieve_async(str(pm_id))).to_dict()
        if not pm.get("customer"):
            try:
                return CardSetupResult(reference, status, card=await self.save_payment_method(
                    customer_ref=str(customer), card_ref=str(pm_id)))
            except CardRefused as refused:
                return CardSetupResult(reference, "failed", failure_code=refused.code)
        return CardSetupResult(reference, status, card=card_details(pm, str(customer)))

    async def detach_card(self, card_ref: str) -> None:
        """``payment_methods.detach``; one already detached or gone is fine."""
        try:
            await self.client.v1.payment_methods.detach_async(card_ref)
        except stripe.InvalidRequestError as exc:
            if exc.http_status not in (400, 404):
                raise

    async def charge_saved(self, requests: Sequence[SavedCharge]) -> list[SavedChargeResult]:
        """Off-session PaymentIntents, at most ``stripe_charge_concurrency`` in flight.
        Every request is sent before a passing fault is raised (the same keys are safe to
        send again)."""
        limit = asyncio.Semaphore(max(1, self.settings.stripe_charge_concurrency))

        async def one(r: SavedCharge) -> SavedChargeResult:
            async with limit:
                params: dict[str, Any] = {
                    "amount": r.amount_minor, "currency": r.currency.lower(),
                    "customer": r.customer_ref, "payment_method": r.card_ref,
                    self.method_types_param: ["card"], "confirm": True, "off_session": True,
                    "metadata": {"kind": SAVED_CHARGE, "key": r.idempotency_key[:120],
                                 "description": r.description[:200]},
                }
                try:
                    intent = await self.client.v1.payment_intents.create_async(
                        params=params,  # type: ignore[arg-type]
                        options={"idempotency_key": r.idempotency_key},
                    )
                except stripe.CardError as exc:
                    error = getattr(exc, "error", None)
                    intent_obj = getattr(error, "payment_intent", None)
                    ref = getattr(intent_obj, "id", None) if intent_obj is not None else None
                    return SavedChargeResult(r.idempotency_key, "declined",
                                             str(ref) if ref else None, decline_code(exc))
                return saved_charge_result(r.idempotency_key, intent.to_dict())

        answers = await asyncio.gather(*(one(r) for r in requests), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return [a for a in answers if isinstance(a, SavedChargeResult)]

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
        metadata = obj.get("metadata")
        if isinstance(metadata, dict) and metadata.get("kind") == SAVED_CHARGE:
            raise UnsupportedEvent("an off-session charge of a saved card")
        _checked_intent(obj)
        payment = payment_from_intent(obj, failed=event_type == "payment_intent.payment_failed")
        return WebhookEvent(event_id=event_id, event_type=event_type, payment=payment, raw=raw)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")
