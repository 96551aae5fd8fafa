"""Helpers for guest orders: a guest reaches their order only through the link token
returned once by the create call."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

GUEST = "/api/v1/guest/orders"


async def guest_order(
    client: httpx.AsyncClient, msisdn: str, amount_minor: int = 3000, *,
    key: str | None = None, confirmation: str | None = None,
) -> tuple[dict[str, Any], str]:
    """Create a guest top-up (no login); returns the order view and its link token."""
    body: dict[str, Any] = {"kind": "guest_topup", "msisdn": msisdn, "amount_minor": amount_minor}
    if confirmation is not None:
        body["confirmation"] = confirmation
    r = await client.post("/api/v1/orders", json=body,
                          headers={"Idempotency-Key": key or uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    created = r.json()
    return created, str(created["guest_token"])


async def guest_pay(client: httpx.AsyncClient, token: str, method: str) -> httpx.Response:
    return await client.post(f"{GUEST}/{token}/payments", json={"method": method})


async def guest_view(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(f"{GUEST}/{token}")
