"""A signed webhook whose content cannot be taken is a 400 problem, never a 500, and
nothing of it is stored: amounts that are not JSON integers in range (``1e400``,
``Infinity``), ids longer than their column or with a NUL byte."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
import pytest
from pydantic import SecretStr

from openmvno.adapters.payments import MalformedEvent
from openmvno.adapters.payments.sandbox import SIGNATURE_HEADER, sign
from openmvno.adapters.payments.stripe import StripeProvider
from openmvno.app import create_app
from openmvno.config import Settings
from openmvno.payments.models import ExternalEvent
from openmvno.runtime import Runtime
from tests.payments.refund_helpers import count

GOOD_DATA = '"reference":"sbx_0123","status":"succeeded","currency":"CNY"'


def _sandbox_body(event_id: str = "evt_1", amount: str = "5000", data: str = GOOD_DATA) -> bytes:
    return (f'{{"id":{json.dumps(event_id)},"type":"payment.succeeded",'
            f'"data":{{{data},"amount_minor":{amount}}}}}').encode()


BAD_SANDBOX = {
    "amount 1e400": _sandbox_body(amount="1e400"),
    "amount Infinity": _sandbox_body(amount="Infinity"),
    "amount -Infinity": _sandbox_body(amount="-Infinity"),
    "amount NaN": _sandbox_body(amount="NaN"),
    "amount as text": _sandbox_body(amount='"5000"'),
    "amount as float": _sandbox_body(amount="5000.0"),
    "amount true": _sandbox_body(amount="true"),
    "amount 2**63": _sandbox_body(amount=str(2**63)),
    "amount negative": _sandbox_body(amount="-1"),
    "event id 121 chars": _sandbox_body(event_id="e" * 121),
    "event id with NUL": _sandbox_body(event_id="evt\u0000x"),
    "reference 121 chars": _sandbox_body(data=GOOD_DATA.replace("sbx_0123", "r" * 121)),
    "unknown status": _sandbox_body(data=GOOD_DATA.replace("succeeded", "refunded")),
    "not JSON": b"{oops",
    "JSON array": b"[1, 2]",
}


@pytest.mark.parametrize("body", BAD_SANDBOX.values(), ids=BAD_SANDBOX.keys())
async def test_a_signed_sandbox_webhook_with_bad_content_is_a_400(
    client: httpx.AsyncClient, rt: Runtime, body: bytes
) -> None:
    secret = rt.settings.sandbox_webhook_secret.get_secret_value()
    r = await client.post("/webhooks/sandbox", content=body,
                          headers={SIGNATURE_HEADER: sign(body, secret),
                                   "Content-Type": "application/json",
                                   "Accept-Language": "zh-CN"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] in ("malformed_event", "json_too_deep")
    assert await count(rt, ExternalEvent) == 0


async def test_the_bad_content_problem_is_localised(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    body = BAD_SANDBOX["amount 1e400"]
    secret = rt.settings.sandbox_webhook_secret.get_secret_value()
    r = await client.post("/webhooks/sandbox", content=body,
                          headers={SIGNATURE_HEADER: sign(body, secret),
                                   "Accept-Language": "zh-CN"})
    assert r.json()["detail"] == "该 Webhook 签名有效，但内容无效。"


async def test_a_well_formed_sandbox_webhook_still_reaches_the_payments(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """The strict parse refuses only what it must: a good event for an unknown payment
    is still the provider-retry 503, as before."""
    body = _sandbox_body()
    secret = rt.settings.sandbox_webhook_secret.get_secret_value()
    r = await client.post("/webhooks/sandbox", content=body,
                          headers={SIGNATURE_HEADER: sign(body, secret)})
    assert r.status_code == 503
    assert r.json()["code"] == "payment_not_ready"


STRIPE_SECRET = "whsec_test_0123456789"


def _stripe_signed(body: bytes) -> dict[str, str]:
    t = int(time.time())
    mac = hmac.new(STRIPE_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={mac}"}


def _intent_event(event_id: str = "evt_1", amount: str = "3000", intent_id: str = "pi_1") -> bytes:
    return (f'{{"id":{json.dumps(event_id)},"type":"payment_intent.succeeded","data":'
            f'{{"object":{{"object":"payment_intent","id":{json.dumps(intent_id)},'
            f'"status":"succeeded","amount":{amount},"currency":"cny"}}}}}}').encode()


BAD_STRIPE = {
    "amount 1e400": _intent_event(amount="1e400"),
    "amount Infinity": _intent_event(amount="Infinity"),
    "amount as float": _intent_event(amount="3000.5"),
    "amount 2**63": _intent_event(amount=str(2**63)),
    "event id 121 chars": _intent_event(event_id="e" * 121),
    "intent id with NUL": _intent_event(intent_id="pi\u0000"),
}


@pytest.mark.parametrize("body", BAD_STRIPE.values(), ids=BAD_STRIPE.keys())
def test_a_signed_stripe_event_with_bad_content_is_malformed(body: bytes) -> None:
    provider = StripeProvider(Settings(payment_provider="stripe", stripe_api_key="sk_test_1",
                                       stripe_webhook_secret=STRIPE_SECRET))
    with pytest.raises(MalformedEvent):
        provider.parse_webhook(body, _stripe_signed(body))


async def test_a_bad_stripe_event_is_a_400_at_the_endpoint(rt: Runtime) -> None:
    rt.settings.payment_provider = "stripe"
    rt.settings.stripe_api_key = SecretStr("sk_test_12345")
    rt.settings.stripe_webhook_secret = SecretStr(STRIPE_SECRET)
    app = create_app(runtime=rt)
    body = BAD_STRIPE["amount 1e400"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post("/webhooks/stripe", content=body, headers=_stripe_signed(body))
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "malformed_event"
    assert await count(rt, ExternalEvent) == 0
