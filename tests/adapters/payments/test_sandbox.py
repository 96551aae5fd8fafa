"""The sandbox payment service: hosted pages, test cards, signed asynchronous webhooks."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import select, text

from openmvno.adapters.payments import InvalidSignature, PaymentProvider
from openmvno.adapters.payments.registry import payment_provider
from openmvno.adapters.payments.sandbox import (
    WEBHOOK_MAX_ATTEMPTS,
    SandboxProvider,
    deliver_due_webhooks,
    sign,
)
from openmvno.adapters.payments.sandbox_models import SandboxPayment
from openmvno.app import create_app
from openmvno.runtime import Runtime
from tests.adapters.payments.sandbox_helpers import SandboxBrowser
from tests.conftest import FrozenClock

RETURN = "http://testserver/portal/payments/return"


class Receiver:
    """Stands in for OpenMVNO's ``/webhooks/sandbox`` endpoint: records what arrives."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status)

    def events(self, provider: PaymentProvider) -> list[Any]:
        return [provider.parse_webhook(r.content, r.headers) for r in self.requests]


@pytest.fixture
def receiver(rt: Runtime) -> Receiver:
    r = Receiver()
    rt.extras["http_transport"] = httpx.MockTransport(r)
    return r


@pytest.fixture
def provider(rt: Runtime) -> PaymentProvider:
    return payment_provider(rt.settings, rt)


@pytest.fixture
async def web(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """A browser on the app, following no redirects (we check where they go)."""
    app = create_app(runtime=rt)
    async with SandboxBrowser(
        rt, transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as c:
        yield c


async def _create(provider: PaymentProvider, method: str = "card", amount: int = 3000) -> Any:
    return await provider.create(
        attempt_id=str(uuid.uuid4()),
        amount_minor=amount,
        currency="CNY",
        method=method,
        description="Top-up 30 CNY",
        return_url=RETURN,
    )


def _path(url: str) -> str:
    return url.removeprefix("http://testserver")


async def _attempt_of(rt: Runtime, reference: str) -> str:
    async with rt.sessions() as s:
        row = await s.scalar(select(SandboxPayment).where(SandboxPayment.reference == reference))
        assert row is not None
        return row.attempt_id


def test_registry_picks_the_sandbox_by_default(rt: Runtime) -> None:
    p = payment_provider(rt.settings, rt)
    assert isinstance(p, SandboxProvider)
    assert p.name == "sandbox"
    assert payment_provider(rt.settings, rt) is p


async def test_card_payment_opens_the_hosted_page_in_both_languages(
    provider: PaymentProvider, web: httpx.AsyncClient
) -> None:
    payment = await _create(provider)
    assert payment.status == "requires_action"
    assert payment.reference.startswith("sbx_")
    assert payment.next_action == {
        "type": "redirect",
        "url": f"http://testserver/sandbox/pay/{payment.reference}",
    }
    r = await web.get(_path(payment.next_action["url"]), params={"lang": "en"})
    assert r.status_code == 200
    assert "OpenMVNO <span>Sandbox Pay</span>" in r.text
    assert "Pay by card" in r.text
    for test_id in ("card-number", "card-expiry", "card-cvc", "pay"):
        assert f'data-test="{test_id}"' in r.text
    for field in ("card-number", "card-expiry", "card-cvc"):
        assert f'<label for="{field}">' in r.text
    assert "CN¥30.00" in r.text
    r = await web.get(_path(payment.next_action["url"]), params={"lang": "zh-CN"})
    assert "银行卡付款" in r.text and "¥30.00" in r.text and "卡号" in r.text


CARDS = [
    ("4242 4242 4242 4242", "succeeded", None),
    ("5555555555554444", "succeeded", None),
    ("6200 0000 0000 0005", "succeeded", None),
    ("4000 0000 0000 0069", "failed", "expired"),
    ("4000 0000 0000 9995", "failed", "insufficient_funds"),
    ("4000 0000 0000 9987", "failed", "limit_exceeded"),
    ("4000 0000 0000 0002", "failed", "declined"),
]


@pytest.mark.parametrize(("number", "status", "code"), CARDS)
async def test_each_test_card_ends_in_one_signed_webhook(
    rt: Runtime,
    provider: PaymentProvider,
    web: httpx.AsyncClient,
    receiver: Receiver,
    number: str,
    status: str,
    code: str | None,
) -> None:
    payment = await _create(provider)
    r = await web.post(
        f"/sandbox/pay/{payment.reference}/card",
        data={"card_number": number, "card_expiry": "12/39", "card_cvc": "123"},
    )
    attempt = await _attempt_of(rt, payment.reference)
    assert r.status_code == 303
    assert r.headers["location"] == f"{RETURN}?attempt={attempt}"

    # Nothing is told to OpenMVNO until the webhook goes out.
    assert receiver.requests == []
    assert await deliver_due_webhooks(rt) == 1
    [request] = receiver.requests
    assert str(request.url) == "http://testserver/webhooks/sandbox"
    [event] = receiver.events(provider)
    assert event.event_id.startswith("evt_")
    assert event.event_type == f"payment.{status}"
    assert event.payment.reference == payment.reference
    assert event.payment.status == status
    assert event.payment.failure_code == code
    assert event.payment.amount_minor == 3000
    assert event.payment.currency == "CNY"
    assert event.raw["data"]["attempt_id"] == attempt

    # Delivered once; the provider agrees when asked directly.
    assert await deliver_due_webhooks(rt) == 0
    now = await provider.retrieve(payment.reference)
    assert (now.status, now.failure_code) == (status, code)


async def test_the_never_answering_card_stays_processing_without_webhook(
    rt: Runtime, provider: PaymentProvider, web: httpx.AsyncClient, receiver: Receiver
) -> None:
    payment = await _create(provider)
    r = await web.post(
        f"/sandbox/pay/{payment.reference}/card",
        data={"card_number": "4000000000000259", "card_expiry": "01/40", "card_cvc": "321"},
    )
    assert r.status_code == 303
    assert await deliver_due_webhooks(rt) == 0
    assert receiver.requests == []
    assert (await provider.retrieve(payment.reference)).status == "processing"
    page = await web.get(f"/sandbox/pay/{payment.reference}", params={"lang": "en"})
    assert 'data-status="processing"' in page.text


@pytest.mark.parametrize(
    ("button", "status", "code"),
    [("approve", "succeeded", None), ("fail", "failed", "authentication_failed")],
)
async def test_3ds_card_shows_a_challenge_first(
    rt: Runtime,
    provider: PaymentProvider,
    web: httpx.AsyncClient,
    receiver: Receiver,
    button: str,
    status: str,
    code: str | None,
) -> None:
    payment = await _create(provider)
    r = await web.post(
        f"/sandbox/pay/{payment.reference}/card",
        data={"card_number": "4000 0027 6000 3184", "card_expiry": "12/39", "card_cvc": "123"},
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/sandbox/pay/{payment.reference}"
    challenge = await web.get(r.headers["location"], params={"lang": "en"})
    assert "3-D Secure" in challenge.text and "ending 3184" in challenge.text
    assert 'data-test="3ds-approve"' in challenge.text and 'data-test="3ds-fail"' in challenge.text
    assert (await provider.retrieve(payment.reference)).status == "requires_action"
    assert await deliver_due_webhooks(rt) == 0

    r = await web.post(f"/sandbox/pay/{payment.reference}/3ds", data={"outcome": button})
    assert r.status_code == 303 and r.headers["location"].startswith(RETURN)
    assert await deliver_due_webhooks(rt) == 1
    [event] = receiver.events(provider)
    assert (event.payment.status, event.payment.failure_code) == (status, code)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"card_number": "4242 4242 4242 4241"}, "card-number", "卡号无效。"),
        ({"card_number": "12ab"}, "card-number", "卡号无效。"),
        ({"card_expiry": "10/26"}, "card-expiry", "此卡已过期。"),
        ({"card_expiry": "13/30"}, "card-expiry", "请按 MM/YY 格式填写有效期。"),
        ({"card_cvc": "12"}, "card-cvc", "安全码（CVC）应为 3 位数字。"),
        ({"card_number": "4111 1111 1111 1111"}, "card-number", "只能使用文档中列出的测试卡号"),
    ],
)
async def test_bad_card_input_is_explained_on_the_page_and_changes_nothing(
    rt: Runtime,
    provider: PaymentProvider,
    web: httpx.AsyncClient,
    frozen: FrozenClock,
    fields: dict[str, str],
    field: str,
    message: str,
) -> None:
    payment = await _create(provider)
    data = {"card_number": "4242424242424242", "card_expiry": "11/26", "card_cvc": "123"}
    r = await web.post(
        f"/sandbox/pay/{payment.reference}/card",
        data={**data, **fields},
        params={"lang": "zh-CN"},
    )
    assert r.status_code == 422
    assert f'data-test="error-{field}"' in r.text
    assert message in r.text
    # The card number typed is never sent back (in any spacing); the form's own
    # placeholder shows the documented test card, which is not what was typed here.
    typed = {**data, **fields}["card_number"]
    page = r.text.replace('placeholder="4242 4242 4242 4242"', "")
    assert f'value="{typed}"' not in page and f">{typed}<" not in page
    digits = re.sub(r"\D", "", typed)
    if len(digits) >= 12:  # a whole card number, anywhere on the page, in any spacing
        assert digits not in page and typed not in page
    assert (await provider.retrieve(payment.reference)).status == "requires_action"
    assert await deliver_due_webhooks(rt) == 0


async def test_card_data_is_never_stored_or_logged(
    rt: Runtime,
    provider: PaymentProvider,
    web: httpx.AsyncClient,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    payment = await _create(provider)
    await web.post(
        f"/sandbox/pay/{payment.reference}/card",
        data={"card_number": "4242 4242 4242 4242", "card_expiry": "08/37", "card_cvc": "987"},
    )
    await deliver_due_webhooks(rt)
    async with rt.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM sandbox_payments"))).mappings().all()
    dump = json.dumps([dict(r) for r in rows], default=str)
    assert "4242424242424242" not in dump and "4242 4242" not in dump
    assert "08/37" not in dump
    [row] = rows
    assert (row["card_brand"], row["card_last4"]) == ("visa", "4242")
    assert "4242424242424242" not in caplog.text and "card_cvc" not in caplog.text
    # The CVC as a value of its own: a bare substring test would also hit "987" inside
    # request ids, UUIDs and memory addresses, and fail by chance.
    assert "987" not in set(re.split(r"[^0-9A-Za-z.]+", caplog.text))
    assert b"4242424242424242" not in receiver.requests[0].content

    # Saving a card for later (the hosted "save a card" page) keeps no more than paying:
    # brand, last four digits, expiry and a token, in the sandbox and in our own tables.
    from openmvno.payments import cards
    from tests.payments.card_helpers import fill_setup_page, new_account

    account = await new_account(rt)
    setup = await cards.start_setup(rt, account_id=account)
    await fill_setup_page(web, setup.next_action["url"], "4242 4242 4242 4242", "08/37", "987")
    await cards.finish_setup(rt, setup_id=setup.id, account_id=account)
    async with rt.engine.connect() as conn:
        saved = ""
        for table in ("sandbox_cards", "sandbox_setups", "saved_cards", "card_setups"):
            found = (await conn.execute(text(f"SELECT * FROM {table}"))).mappings().all()
            saved += json.dumps([dict(r) for r in found], default=str)
    assert "4242424242424242" not in saved and "4242 4242" not in saved
    assert "08/37" not in saved and '"987"' not in saved
    assert '"last4": "4242"' in saved and '"exp_year": 2037' in saved
    assert "4242424242424242" not in caplog.text and "card_cvc" not in caplog.text
    assert "987" not in set(re.split(r"[^0-9A-Za-z.]+", caplog.text))


@pytest.mark.parametrize("method", ["alipay", "wechat_pay"])
async def test_wallet_qr_confirm_succeeds(
    rt: Runtime,
    provider: PaymentProvider,
    web: httpx.AsyncClient,
    receiver: Receiver,
    method: str,
) -> None:
    payment = await _create(provider, method)
    url = f"http://testserver/sandbox/pay/{payment.reference}"
    assert payment.next_action == {"type": "redirect", "url": url, "qr_url": f"{url}/scan"}
    page = await web.get(_path(url), params={"lang": "zh-CN"})
    assert page.status_code == 200
    assert "<svg" in page.text and 'data-test="qr"' in page.text
    assert ("支付宝" if method == "alipay" else "微信支付") in page.text
    assert 'data-test="confirm-scan"' in page.text and 'data-test="decline"' in page.text
    phone = await web.get(f"/sandbox/pay/{payment.reference}/scan")
    assert 'data-test="confirm-scan"' in phone.text and "<svg" not in phone.text

    r = await web.post(f"/sandbox/pay/{payment.reference}/confirm")
    assert r.status_code == 303 and r.headers["location"].startswith(RETURN + "?attempt=")
    assert await deliver_due_webhooks(rt) == 1
    [event] = receiver.events(provider)
    assert (event.payment.status, event.payment.failure_code) == ("succeeded", None)


async def test_wallet_decline_fails_with_declined(
    rt: Runtime, provider: PaymentProvider, web: httpx.AsyncClient, receiver: Receiver
) -> None:
    payment = await _create(provider, "wechat_pay")
    r = await web.post(f"/sandbox/pay/{payment.reference}/decline")
    assert r.status_code == 303
    await deliver_due_webhooks(rt)
    [event] = receiver.events(provider)
    assert (event.payment.status, event.payment.failure_code) == ("failed", "declined")


async def test_bank_transfer_shows_details_and_simulated_transfer_succeeds(
    rt: Runtime, provider: PaymentProvider, web: httpx.AsyncClient, receiver: Receiver
) -> None:
    payment = await _create(provider, "bank_transfer", amount=12345)
    details = payment.next_action["bank_transfer"]
    assert details["reference"] == payment.reference
    page = await web.get(f"/sandbox/pay/{payment.reference}", params={"lang": "en"})
    assert payment.reference in page.text
    assert details["account_number"] in page.text
    assert rt.settings.operator_name in page.text
    assert "CN¥123.45" in page.text
    assert 'data-test="simulate-transfer"' in page.text
    r = await web.post(f"/sandbox/pay/{payment.reference}/transfer")
    assert r.status_code == 303
    await deliver_due_webhooks(rt)
    [event] = receiver.events(provider)
    assert event.payment.status == "succeeded" and event.payment.amount_minor == 12345


async def test_a_second_press_after_the_outcome_changes_nothing(
    rt: Runtime, provider: PaymentProvider, web: httpx.AsyncClient, receiver: Receiver
) -> None:
    payment = await _create(provider, "alipay")
    await web.post(f"/sandbox/pay/{payment.reference}/confirm")
    again = await web.post(f"/sandbox/pay/{payment.reference}/decline", params={"lang": "en"})
    assert again.status_code == 409
    assert 'data-status="succeeded"' in again.text
    assert await deliver_due_webhooks(rt) == 1
    assert len(receiver.requests) == 1
    assert (await provider.retrieve(payment.reference)).status == "succeeded"


async def test_create_is_idempotent_per_attempt_and_survives_a_restart(
    rt: Runtime, provider: PaymentProvider
) -> None:
    attempt = str(uuid.uuid4())
    kwargs: dict[str, Any] = {
        "attempt_id": attempt,
        "amount_minor": 500,
        "currency": "cny",
        "method": "card",
        "description": "x",
        "return_url": RETURN,
    }
    first = await provider.create(**kwargs)
    second = await provider.create(**kwargs)
    assert first.reference == second.reference
    fresh = SandboxProvider(rt)  # a new process would build a new one
    again = await fresh.retrieve(first.reference)
    assert (again.status, again.amount_minor, again.currency) == ("requires_action", 500, "CNY")
    with pytest.raises(ValueError, match="wallet"):
        await provider.create(**{**kwargs, "attempt_id": str(uuid.uuid4()), "method": "wallet"})
    with pytest.raises(LookupError):
        await provider.retrieve("sbx_nope")


async def test_unknown_reference_page_is_404(web: httpx.AsyncClient) -> None:
    r = await web.get("/sandbox/pay/sbx_missing", params={"lang": "en"})
    assert r.status_code == 404
    assert "Payment not found" in r.text


def _body(status: str = "succeeded") -> bytes:
    return json.dumps(
        {
            "id": "evt_1",
            "type": f"payment.{status}",
            "data": {
                "reference": "sbx_1",
                "status": status,
                "amount_minor": 100,
                "currency": "CNY",
                "failure_code": None,
            },
        }
    ).encode()


def test_parse_webhook_rejects_tampered_old_foreign_and_unsigned(
    provider: PaymentProvider,
) -> None:
    secret = "sandbox-webhook-secret"
    body = _body()
    ok = provider.parse_webhook(body, {"sandbox-signature": sign(body, secret)})
    assert ok.event_id == "evt_1" and ok.payment.status == "succeeded"

    tampered = body.replace(b"100", b"999")
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(tampered, {"Sandbox-Signature": sign(body, secret)})
    old = sign(body, secret, timestamp=int(time.time()) - 301)
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(body, {"Sandbox-Signature": old})
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(body, {"Sandbox-Signature": sign(body, "someone-else")})
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(body, {})
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(body, {"Sandbox-Signature": "t=abc,v1=00"})


async def test_failed_deliveries_are_retried_with_backoff_then_given_up(
    rt: Runtime, provider: PaymentProvider, web: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    down = Receiver(status=503)
    rt.extras["http_transport"] = httpx.MockTransport(down)
    payment = await _create(provider, "bank_transfer")
    await web.post(f"/sandbox/pay/{payment.reference}/transfer")

    assert await deliver_due_webhooks(rt) == 1
    assert await deliver_due_webhooks(rt) == 0  # not due again yet
    frozen.advance(seconds=10)
    assert await deliver_due_webhooks(rt) == 1
    for _ in range(WEBHOOK_MAX_ATTEMPTS):
        frozen.advance(hours=2)
        await deliver_due_webhooks(rt)
    assert len(down.requests) == WEBHOOK_MAX_ATTEMPTS
    ids = {json.loads(r.content)["id"] for r in down.requests}
    assert len(ids) == 1  # every retry carries the same event id

    async with rt.sessions() as s:
        row = await s.scalar(select(SandboxPayment))
        assert row is not None
        assert row.webhook_due_at is None and row.webhook_delivered_at is None
        assert row.webhook_last_error == "HTTP 503"


async def test_webhooks_can_be_delivered_into_an_app_over_asgi(
    rt: Runtime, provider: PaymentProvider, web: httpx.AsyncClient
) -> None:
    """The transport can be the app itself; here a tiny receiver app verifies the signature."""
    got: list[str] = []
    receiver_app = FastAPI()

    @receiver_app.post("/webhooks/sandbox")
    async def hook(request: Request) -> Response:
        try:
            event = provider.parse_webhook(await request.body(), request.headers)
        except InvalidSignature:
            return Response(status_code=400)
        got.append(event.payment.status)
        return Response(status_code=204)

    rt.extras["http_transport"] = httpx.ASGITransport(app=receiver_app)
    payment = await _create(provider, "alipay")
    await web.post(f"/sandbox/pay/{payment.reference}/confirm")
    assert await deliver_due_webhooks(rt) == 1
    assert got == ["succeeded"]
    async with rt.sessions() as s:
        row = await s.scalar(select(SandboxPayment))
        assert row is not None and row.webhook_delivered_at is not None


async def test_sandbox_pages_are_not_mounted_for_stripe(rt: Runtime) -> None:
    rt.settings.payment_provider = "stripe"
    app = create_app(runtime=rt)
    paths = {getattr(r, "path", "") for r in app.routes}
    assert not any(p.startswith("/sandbox") for p in paths)
