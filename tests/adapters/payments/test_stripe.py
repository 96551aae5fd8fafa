"""The Stripe adapter: signed events verified and normalised; PaymentIntents through
the real SDK against localstripe (a fake Stripe) when it is installed."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import stripe
from pydantic import SecretStr

from openmvno.adapters.payments import InvalidSignature, RefundRefused
from openmvno.adapters.payments.registry import payment_provider
from openmvno.adapters.payments.stripe import StripeProvider, UnsupportedEvent, payment_from_intent
from openmvno.config import Settings
from openmvno.runtime import Runtime

SECRET = "whsec_test_0123456789"


def _settings(**kw: Any) -> Settings:
    return Settings(
        payment_provider="stripe",
        stripe_api_key="sk_test_12345",
        stripe_webhook_secret=SECRET,
        **kw,
    )


def _signed(
    payload: dict[str, Any], *, secret: str = SECRET, t: int | None = None
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    ts = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={ts},v1={mac}"}


def _intent(status: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": "pi_123",
        "object": "payment_intent",
        "amount": 3000,
        "currency": "cny",
        "status": status,
        "client_secret": "pi_123_secret_abc",
        "metadata": {"attempt_id": "att-1"},
        "last_payment_error": None,
        "next_action": None,
        **kw,
    }


def _event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"evt_{kind}", "object": "event", "type": kind, "data": {"object": obj}}


def test_registry_builds_stripe_when_configured(rt: Runtime) -> None:
    rt.settings.payment_provider = "stripe"
    provider = payment_provider(rt.settings, rt)
    assert isinstance(provider, StripeProvider) and provider.name == "stripe"


@pytest.mark.parametrize(
    ("kind", "obj", "status", "code"),
    [
        ("payment_intent.succeeded", _intent("succeeded"), "succeeded", None),
        ("payment_intent.processing", _intent("processing"), "processing", None),
        (
            "payment_intent.requires_action",
            _intent(
                "requires_action",
                next_action={
                    "type": "redirect_to_url",
                    "redirect_to_url": {"url": "https://bank/3ds"},
                },
            ),
            "requires_action",
            None,
        ),
        (
            "payment_intent.payment_failed",
            _intent(
                "requires_payment_method",
                last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"},
            ),
            "failed",
            "insufficient_funds",
        ),
        (
            "payment_intent.payment_failed",
            _intent(
                "requires_payment_method",
                last_payment_error={
                    "code": "card_declined",
                    "decline_code": "card_velocity_exceeded",
                },
            ),
            "failed",
            "limit_exceeded",
        ),
        (
            "payment_intent.payment_failed",
            _intent("requires_payment_method", last_payment_error={"code": "expired_card"}),
            "failed",
            "expired",
        ),
        (
            "payment_intent.payment_failed",
            _intent(
                "requires_payment_method",
                last_payment_error={"code": "card_declined", "decline_code": "generic_decline"},
            ),
            "failed",
            "declined",
        ),
        (
            "payment_intent.canceled",
            _intent("canceled", cancellation_reason="abandoned"),
            "failed",
            "expired",
        ),
    ],
)
def test_signed_events_are_verified_and_normalised(
    kind: str, obj: dict[str, Any], status: str, code: str | None
) -> None:
    provider = StripeProvider(_settings())
    body, headers = _signed(_event(kind, obj))
    event = provider.parse_webhook(body, headers)
    assert event.event_id == f"evt_{kind}"
    assert event.event_type == kind
    assert event.payment.reference == "pi_123"
    assert (event.payment.status, event.payment.failure_code) == (status, code)
    assert (event.payment.amount_minor, event.payment.currency) == (3000, "CNY")
    assert event.raw["data"]["object"]["metadata"]["attempt_id"] == "att-1"
    if status == "requires_action":
        assert event.payment.next_action == {"type": "redirect", "url": "https://bank/3ds"}


def test_tampered_old_and_foreign_events_are_rejected() -> None:
    provider = StripeProvider(_settings())
    payload = _event("payment_intent.succeeded", _intent("succeeded"))
    body, headers = _signed(payload)
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(body.replace(b"3000", b"1"), headers)
    old_body, old_headers = _signed(payload, t=int(time.time()) - 301)
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(old_body, old_headers)
    foreign_body, foreign_headers = _signed(payload, secret="whsec_other")
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(foreign_body, foreign_headers)
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(body, {})


def test_signed_events_about_other_objects_are_marked_unsupported() -> None:
    provider = StripeProvider(_settings())
    body, headers = _signed(_event("charge.succeeded", {"id": "ch_1", "object": "charge"}))
    with pytest.raises(UnsupportedEvent):
        provider.parse_webhook(body, headers)


def test_intent_mapping_without_error_still_waits_for_the_payer() -> None:
    waiting = payment_from_intent(_intent("requires_payment_method"))
    assert waiting.status == "requires_action"
    assert waiting.next_action == {
        "type": "stripe_client_secret",
        "client_secret": "pi_123_secret_abc",
    }
    qr = payment_from_intent(
        _intent(
            "requires_action",
            next_action={
                "type": "wechat_pay_display_qr_code",
                "wechat_pay_display_qr_code": {
                    "data": "weixin://x",
                    "image_data_url": "data:image/png;base64,AA",
                    "hosted_instructions_url": "https://h",
                },
            },
        )
    )
    assert qr.next_action["type"] == "qr" and qr.next_action["data"] == "weixin://x"


class FakeStripe:
    """Records what the SDK sends and answers with a canned PaymentIntent."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.answer)

    def provider(self) -> StripeProvider:
        http = stripe.HTTPXClient()
        http._client_async = httpx.AsyncClient(transport=httpx.MockTransport(self))
        client = stripe.StripeClient("sk_test_12345", http_client=http)
        return StripeProvider(_settings(), client=client)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.requests[-1].content.decode())


async def test_create_sends_an_idempotent_intent_for_the_attempt() -> None:
    fake = FakeStripe(_intent("requires_payment_method"))
    payment = await fake.provider().create(
        attempt_id="att-1",
        amount_minor=3000,
        currency="CNY",
        method="card",
        description="Top-up",
        return_url="http://testserver/return",
    )
    request = fake.requests[-1]
    assert request.url.path == "/v1/payment_intents"
    assert request.headers["idempotency-key"] == "attempt-att-1"
    form = fake.form()
    assert form["amount"] == ["3000"] and form["currency"] == ["cny"]
    assert form["allowed_payment_method_types[0]"] == ["card"]
    assert "payment_method_types[0]" not in form
    assert form["metadata[attempt_id]"] == ["att-1"]
    assert "confirm" not in form
    assert payment.status == "requires_action"
    assert payment.next_action == {
        "type": "stripe_client_secret",
        "client_secret": "pi_123_secret_abc",
    }


async def test_alipay_is_confirmed_at_once_and_redirects() -> None:
    answer = _intent(
        "requires_action",
        next_action={
            "type": "alipay_handle_redirect",
            "alipay_handle_redirect": {"url": "https://alipay.example/pay"},
        },
    )
    fake = FakeStripe(answer)
    payment = await fake.provider().create(
        attempt_id="att-2",
        amount_minor=3000,
        currency="CNY",
        method="alipay",
        description="Top-up",
        return_url="http://testserver/return",
    )
    form = fake.form()
    assert form["confirm"] == ["true"]
    assert form["payment_method_data[type]"] == ["alipay"]
    assert form["return_url"] == ["http://testserver/return"]
    assert payment.next_action == {"type": "redirect", "url": "https://alipay.example/pay"}
    with pytest.raises(ValueError, match="bank_transfer"):
        await fake.provider().create(
            attempt_id="att-3",
            amount_minor=1,
            currency="CNY",
            method="bank_transfer",
            description="",
            return_url="",
        )


# ---------------------------------------------------------------- localstripe


def _localstripe() -> list[str] | None:
    exe = shutil.which("localstripe") or str(Path(sys.executable).parent / "localstripe")
    return [exe] if Path(exe).exists() else None


def _local(url: str) -> StripeProvider:
    """localstripe predates API 2026-09-30.endive: it only knows ``payment_method_types``
    (and rejects unknown parameters such as ``allowed_payment_method_types``)."""
    return StripeProvider(_settings(stripe_api_base=url), method_types_param="payment_method_types")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    cmd = _localstripe()
    if cmd is None:
        pytest.skip("localstripe is not installed (pip install localstripe)")
    port = _free_port()
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("localstripe did not start")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_card_intent_created_and_retrieved_through_the_sdk(localstripe_url: str) -> None:
    provider = _local(localstripe_url)
    attempt = str(uuid.uuid4())
    created = await provider.create(
        attempt_id=attempt,
        amount_minor=3000,
        currency="CNY",
        method="card",
        description="Top-up",
        return_url="http://testserver/return",
    )
    assert created.reference.startswith("pi_")
    assert (created.status, created.amount_minor, created.currency) == (
        "requires_action",
        3000,
        "CNY",
    )
    assert created.next_action["type"] == "stripe_client_secret"
    assert created.next_action["client_secret"].startswith(created.reference)
    again = await provider.retrieve(created.reference)
    assert again.status == "requires_action"
    raw = await provider.client.v1.payment_intents.retrieve_async(created.reference)
    assert raw.metadata["attempt_id"] == attempt


@pytest.mark.parametrize(
    ("number", "status", "code"),
    [("4242424242424242", "succeeded", None), ("4000000000000341", "failed", "declined")],
)
async def test_retrieve_maps_confirmed_intents(
    localstripe_url: str, number: str, status: str, code: str | None
) -> None:
    """The browser (Stripe.js) would confirm; here the SDK confirms directly."""
    provider = _local(localstripe_url)
    client = provider.client
    pm = await client.v1.payment_methods.create_async(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2039, "cvc": "123"},
        }
    )
    intent = await client.v1.payment_intents.create_async(
        params={  # type: ignore[typeddict-unknown-key]
            "amount": 1000,
            "currency": "cny",
            "payment_method_types": ["card"],
            "payment_method": pm.id,
        }
    )
    with contextlib.suppress(stripe.CardError):
        await client.v1.payment_intents.confirm_async(intent.id)
    reference = intent.id
    now = await provider.retrieve(reference)
    assert (now.status, now.failure_code) == (status, code)


async def test_stripe_webhook_endpoint_verifies_and_acknowledges_other_events(rt: Runtime) -> None:
    """Through the real endpoint: a signed event about something else is a 200 no-op, a
    forged one is a 400, and neither is stored."""
    from openmvno.app import create_app

    rt.settings.payment_provider = "stripe"
    rt.settings.stripe_api_key = SecretStr("sk_test_12345")
    rt.settings.stripe_webhook_secret = SecretStr(SECRET)
    app = create_app(runtime=rt)
    body, headers = _signed({"id": "evt_cust", "type": "customer.created",
                             "data": {"object": {"object": "customer", "id": "cus_1"}}})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        ok = await c.post("/webhooks/stripe", content=body, headers=headers)
        forged = await c.post("/webhooks/stripe", content=body,
                              headers={"Stripe-Signature": "t=1,v1=00"})
    assert ok.status_code == 200
    assert ok.json()["outcome"].startswith("ignored")
    assert forged.status_code == 400
    assert forged.json()["code"] == "bad_signature"


# ---------------------------------------------------------------- refunds and cancels


class StripeAnswers:
    """A Stripe that answers each request with the next canned (status, body)."""

    def __init__(self, *answers: tuple[int, dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.answers.pop(0)
        return httpx.Response(status, json=body)

    def provider(self) -> StripeProvider:
        http = stripe.HTTPXClient()
        http._client_async = httpx.AsyncClient(transport=httpx.MockTransport(self))
        client = stripe.StripeClient("sk_test_12345", http_client=http)
        return StripeProvider(_settings(), client=client)


def _refund_obj(status: str = "succeeded", **kw: Any) -> dict[str, Any]:
    return {"id": "re_1", "object": "refund", "amount": 3000, "currency": "cny",
            "payment_intent": "pi_123", "status": status, **kw}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "code": code, "message": message}}


async def test_refund_is_created_for_the_intent_with_our_idempotency_key() -> None:
    fake = StripeAnswers((200, _refund_obj()))
    refund = await fake.provider().refund("pi_123", 3000, idempotency_key="7c0f-refund-id")
    [request] = fake.requests
    assert (request.method, request.url.path) == ("POST", "/v1/refunds")
    assert request.headers["idempotency-key"] == "7c0f-refund-id"
    assert parse_qs(request.content.decode()) == {"payment_intent": ["pi_123"], "amount": ["3000"]}
    assert (refund.refund_id, refund.status, refund.amount_minor) == ("re_1", "succeeded", 3000)


@pytest.mark.parametrize(
    ("status", "ours"),
    [("pending", "pending"), ("requires_action", "pending"), ("failed", "failed"),
     ("canceled", "failed")],
)
async def test_refund_statuses_are_normalised(status: str, ours: str) -> None:
    fake = StripeAnswers((200, _refund_obj(status, failure_reason="lost_or_stolen_card")))
    refund = await fake.provider().retrieve_refund("re_1")
    assert fake.requests[0].url.path == "/v1/refunds/re_1"
    assert refund.status == ours
    assert refund.failure_reason == ("lost_or_stolen_card" if ours == "failed" else None)


async def test_a_refund_stripe_refuses_for_good_is_refund_refused() -> None:
    fake = StripeAnswers((400, _error("charge_already_refunded", "Charge ch_1 has already "
                                                                 "been refunded.")))
    with pytest.raises(RefundRefused, match="already been refunded"):
        await fake.provider().refund("pi_123", 3000, idempotency_key="k1")


async def test_a_passing_stripe_fault_is_raised_to_be_retried() -> None:
    """A 500 (after the SDK's own retries) is not a refusal: the worker tries again."""
    answers = [(500, {"error": {"type": "api_error", "message": "boom"}})] * 3
    fake = StripeAnswers(*answers)
    with pytest.raises(stripe.StripeError) as raised:
        await fake.provider().refund("pi_123", 3000, idempotency_key="k1")
    assert not isinstance(raised.value, RefundRefused)
    assert {r.headers["idempotency-key"] for r in fake.requests} == {"k1"}


async def test_cancel_of_a_captured_intent_returns_it_captured() -> None:
    fake = StripeAnswers(
        (400, _error("payment_intent_unexpected_state", "You cannot cancel this "
                                                        "PaymentIntent because it has a "
                                                        "status of succeeded.")),
        (200, _intent("succeeded")),
    )
    payment = await fake.provider().cancel("pi_123")
    assert [r.url.path for r in fake.requests] == ["/v1/payment_intents/pi_123/cancel",
                                                   "/v1/payment_intents/pi_123"]
    assert payment.status == "succeeded"


async def test_refund_and_cancel_through_the_sdk_against_localstripe(localstripe_url: str) -> None:
    provider = _local(localstripe_url)
    client = provider.client
    pm = await client.v1.payment_methods.create_async(params={
        "type": "card",
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2039, "cvc": "123"},
    })
    paid = await client.v1.payment_intents.create_async(params={  # type: ignore[typeddict-unknown-key]
        "amount": 3000, "currency": "cny", "payment_method_types": ["card"],
        "payment_method": pm.id,
    })
    await client.v1.payment_intents.confirm_async(paid.id)
    assert (await provider.retrieve(paid.id)).status == "succeeded"

    refund = await provider.refund(paid.id, 3000, idempotency_key=str(uuid.uuid4()))
    assert refund.refund_id.startswith("re_")
    assert (refund.status, refund.amount_minor) == ("succeeded", 3000)
    assert (await provider.retrieve_refund(refund.refund_id)).status == "succeeded"
    captured = await provider.cancel(paid.id)  # too late to cancel: still captured
    assert captured.status == "succeeded"

    waiting = await provider.create(
        attempt_id=str(uuid.uuid4()), amount_minor=1000, currency="CNY", method="card",
        description="Top-up", return_url="http://testserver/return",
    )
    stopped = await provider.cancel(waiting.reference)
    assert (stopped.status, stopped.failure_code) == ("failed", "cancelled")


async def test_a_staff_refund_of_a_stripe_card_order_is_refunded_at_localstripe(
    localstripe_url: str, rt: Runtime, client: httpx.AsyncClient, deliver: Any
) -> None:
    """The whole path: card order paid at (local)Stripe, staff refund, the worker calls
    ``refunds.create``; Stripe then holds one refund of the full amount."""
    from sqlalchemy import select

    from openmvno.accounts.models import Account
    from openmvno.db import unit_of_work
    from openmvno.payments import service as payments
    from openmvno.payments.models import PaymentAttempt, PaymentRefund
    from tests.orders.helpers import give_line, order, pay, seed_plans, staff, subscriber

    provider = _local(localstripe_url)
    rt.extras["payment_provider"] = provider
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    o = (await order(client, headers, {"kind": "plan", "plan_code": "M30",
                                       "line_id": str(line.id)})).json()
    started = await pay(client, headers, o["id"], "card")
    assert started.json()["next_action"]["type"] == "stripe_client_secret"
    async with unit_of_work(rt.sessions) as s:
        reference = await s.scalar(select(PaymentAttempt.provider_ref))
        buyer = await s.get(Account, me)
    assert reference is not None
    # What Stripe.js does in the payer's browser:
    pm = await provider.client.v1.payment_methods.create_async(params={
        "type": "card",
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2039, "cvc": "123"},
    })
    await provider.client.v1.payment_intents.update_async(reference,
                                                          params={"payment_method": pm.id})
    await provider.client.v1.payment_intents.confirm_async(reference)
    paid = await payments.refresh_order(rt, order_id=uuid.UUID(o["id"]), viewer=buyer)
    assert paid.state == "fulfilled"

    r = await client.post(f"/api/v1/orders/{o['id']}/refund", json={"reason": "duplicate"},
                          headers=await staff(client, rt))
    assert r.status_code == 200, r.text
    await deliver()
    async with unit_of_work(rt.sessions) as s:
        refund = await s.scalar(select(PaymentRefund))
    assert refund is not None
    assert (refund.state, refund.provider, refund.attempts) == ("succeeded", "stripe", 1)
    assert refund.provider_refund_id is not None and refund.provider_refund_id.startswith("re_")
    at_stripe = await provider.client.v1.refunds.list_async(params={"payment_intent": reference})
    assert [(x.id, x.amount) for x in at_stripe.data] == [(refund.provider_refund_id, 5000)]
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["result"]["refund"]["status"] == "succeeded"
