"""Shared by the orders, payments and receipts tests: plans, stock, a tiny provider."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from openmvno.accounts import service as accounts
from openmvno.accounts.models import Role
from openmvno.adapters.payments import (
    InvalidSignature,
    ProviderPayment,
    ProviderRefund,
    ProviderStatus,
    RefundRefused,
    WebhookEvent,
)
from openmvno.catalog.models import Plan, PlanKind
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import EntryReason
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.runtime import Runtime
from tests.conftest import register_and_login

GB = 1024**3
SECRET = b"test-provider-secret"


class TinyProvider:
    """The PaymentProvider port in a few lines: payments live in a dict, webhooks are
    JSON signed with HMAC-SHA256 in ``X-Test-Signature``."""

    name = "testpay"

    def __init__(self) -> None:
        self.payments: dict[str, ProviderPayment] = {}
        self.created = 0
        self.refunds: dict[str, ProviderRefund] = {}
        """By idempotency key: the same key never refunds twice."""

    async def create(
        self, *, attempt_id: str, amount_minor: int, currency: str, method: str,
        description: str, return_url: str,
    ) -> ProviderPayment:
        self.created += 1
        reference = f"tp_{attempt_id}"
        payment = ProviderPayment(
            reference=reference, status="requires_action", amount_minor=amount_minor,
            currency=currency,
            next_action={"type": "redirect", "url": f"https://pay.test/{reference}",
                         "return_url": return_url},
        )
        self.payments[reference] = payment
        return payment

    async def retrieve(self, reference: str) -> ProviderPayment:
        return self.payments[reference]

    async def cancel(self, reference: str) -> ProviderPayment:
        if self.payments[reference].status in ("requires_action", "processing"):
            return self.settle(reference, "failed", failure_code="cancelled")
        return self.payments[reference]

    async def refund(
        self, reference: str, amount_minor: int, idempotency_key: str
    ) -> ProviderRefund:
        if idempotency_key not in self.refunds:
            if self.payments[reference].status != "succeeded":
                raise RefundRefused("not captured")
            self.refunds[idempotency_key] = ProviderRefund(
                refund_id=f"tr_{len(self.refunds) + 1}", status="succeeded",
                amount_minor=amount_minor,
            )
        return self.refunds[idempotency_key]

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        return next(r for r in self.refunds.values() if r.refund_id == refund_id)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("x-test-signature", ""), expected):
            raise InvalidSignature("bad signature")
        d = json.loads(body)
        payment = ProviderPayment(
            reference=d["reference"], status=d["status"], amount_minor=d["amount_minor"],
            currency=d["currency"], failure_code=d.get("failure_code"),
        )
        return WebhookEvent(event_id=d["id"], event_type=d["type"], payment=payment, raw=d)

    def settle(
        self, reference: str, status: ProviderStatus, *, failure_code: str | None = None,
        amount_minor: int | None = None,
    ) -> ProviderPayment:
        old = self.payments[reference]
        new = ProviderPayment(
            reference=reference, status=status,
            amount_minor=old.amount_minor if amount_minor is None else amount_minor,
            currency=old.currency, failure_code=failure_code,
        )
        self.payments[reference] = new
        return new


def use_tiny_provider(rt: Runtime) -> TinyProvider:
    provider = TinyProvider()
    rt.extras["payment_provider"] = provider
    return provider


def signed(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    sig = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return body, {"X-Test-Signature": sig, "Content-Type": "application/json"}


async def send_webhook(
    client: httpx.AsyncClient, provider: TinyProvider, reference: str, status: ProviderStatus,
    *, event_id: str | None = None, failure_code: str | None = None,
    amount_minor: int | None = None,
) -> httpx.Response:
    """Settle the payment at the provider and deliver its signed event."""
    p = provider.settle(reference, status, failure_code=failure_code, amount_minor=amount_minor)
    body, headers = signed({
        "id": event_id or f"evt_{uuid.uuid4().hex}", "type": f"payment.{status}",
        "reference": reference, "status": status, "amount_minor": p.amount_minor,
        "currency": p.currency, "failure_code": failure_code,
    })
    return await client.post(f"/webhooks/{provider.name}", content=body, headers=headers)


async def seed_plans(rt: Runtime) -> None:
    async with unit_of_work(rt.sessions) as s:
        s.add_all([
            Plan(code="M30", kind=PlanKind.mixed, name_zh="畅享30天", name_en="Enjoy 30 days",
                 price_minor=5000, currency="CNY", validity_days=30, data_bytes=10 * GB,
                 voice_seconds=6000, sms_count=100),
            Plan(code="D7", kind=PlanKind.data, name_zh="7天流量", name_en="Data 7 days",
                 price_minor=1500, currency="CNY", validity_days=7, data_bytes=2 * GB),
            Plan(code="ADD1G", kind=PlanKind.addon, name_zh="1GB加油包", name_en="1 GB add-on",
                 price_minor=1000, currency="CNY", validity_days=60, data_bytes=GB),
        ])


async def seed_esims(rt: Runtime, n: int) -> None:
    async with unit_of_work(rt.sessions) as s:
        for _ in range(n):
            i = uuid.uuid4().int % 10**9
            s.add(Line(kind=LineKind.esim, iccid=f"8986000{i:012d}", msisdn=f"+86170{i % 10**8:08d}",
                       esim_matching_id=f"MATCH-{uuid.uuid4().hex[:16]}",
                       state=LineState.inventory))


async def give_line(
    rt: Runtime, account_id: uuid.UUID, *, state: LineState = LineState.active,
    expires_at: datetime | None = None,
) -> Line:
    i = uuid.uuid4().int % 10**9
    line = Line(kind=LineKind.sim, iccid=f"8986001{i:012d}", msisdn=f"+86171{i % 10**8:08d}",
                account_id=account_id, state=state, expires_at=expires_at)
    async with unit_of_work(rt.sessions) as s:
        s.add(line)
    return line


async def fund_wallet(rt: Runtime, account_id: uuid.UUID, amount_minor: int) -> None:
    async with unit_of_work(rt.sessions) as s:
        await ledger.credit_wallet(
            s, account_id=account_id, currency="CNY", amount_minor=amount_minor,
            reason=EntryReason.adjust, key=f"test-fund:{uuid.uuid4()}",
        )


async def wallet_minor(rt: Runtime, account_id: uuid.UUID) -> int:
    async with unit_of_work(rt.sessions) as s:
        return (await ledger.wallet(s, account_id=account_id, currency="CNY")).remaining


async def subscriber(client: httpx.AsyncClient, **kw: Any) -> tuple[dict[str, str], uuid.UUID]:
    headers = await register_and_login(client, **kw)
    me = await client.get("/api/v1/me", headers=headers)
    return headers, uuid.UUID(me.json()["id"])


async def staff(client: httpx.AsyncClient, rt: Runtime) -> dict[str, str]:
    async with unit_of_work(rt.sessions) as s:
        await accounts.create_staff(s, rt, name="Agent Wang", email="agent@op.example",
                                    password="Agent-pass-123", role=Role.agent)
    r = await client.post("/api/v1/auth/token",
                          json={"login": "agent@op.example", "password": "Agent-pass-123"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def order(
    client: httpx.AsyncClient, headers: dict[str, str] | None, body: dict[str, Any],
    key: str | None = None,
) -> httpx.Response:
    h = {**(headers or {}), "Idempotency-Key": key or uuid.uuid4().hex}
    return await client.post("/api/v1/orders", json=body, headers=h)


async def pay(
    client: httpx.AsyncClient, headers: dict[str, str] | None, order_id: str, method: str,
) -> httpx.Response:
    return await client.post(f"/api/v1/orders/{order_id}/payments", json={"method": method},
                             headers=headers or {})


async def paid_plan_order(
    client: httpx.AsyncClient, rt: Runtime, plan_code: str = "D7", **who: Any
) -> tuple[dict[str, str], dict[str, Any]]:
    """A new subscriber (``who``: as :func:`subscriber`) with a line buys ``plan_code``
    for it and pays from a funded wallet: their headers and the order as created."""
    await seed_plans(rt)
    headers, me = await subscriber(client, **who)
    line = await give_line(rt, me)
    await fund_wallet(rt, me, 10000)
    created = (await order(client, headers, {"kind": "plan", "plan_code": plan_code,
                                             "line_id": str(line.id)})).json()
    assert (await pay(client, headers, created["id"], "wallet")).status_code == 201
    return headers, created


def reference_of(payment_response: httpx.Response) -> str:
    url = payment_response.json()["next_action"]["url"]
    return str(url.rsplit("/", 1)[1])
