"""Shared pieces for the account tests: a password the policy accepts, accounts in each
state, a client from another address, and a password checker that counts its calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from openmvno.accounts import service as accounts
from openmvno.accounts.models import Role
from openmvno.app import create_app
from openmvno.db import unit_of_work
from openmvno.runtime import Runtime
from openmvno.security import Passwords
from tests.conftest import last_code

PASSWORD = "Quiet-harbour-2026"


async def register(client: httpx.AsyncClient, phone: str, *, email: str | None = None) -> None:
    """An unverified subscriber (its verification code is in the dev outbox)."""
    body: dict[str, Any] = {"name": "Li Lei", "phone": phone, "password": PASSWORD}
    if email:
        body["email"] = email
    r = await client.post("/api/v1/auth/register", json=body)
    assert r.status_code == 201, r.text


async def register_verified(
    client: httpx.AsyncClient, phone: str, *, email: str | None = None
) -> str:
    """A verified subscriber; returns the (used) verification code."""
    await register(client, phone, email=email)
    code = await last_code(client, phone)
    r = await client.post("/api/v1/auth/verify", json={"login": phone, "code": code})
    assert r.status_code == 200, r.text
    return code


async def make_staff(rt: Runtime, email: str, role: Role = Role.admin) -> None:
    async with unit_of_work(rt.sessions) as session:
        await accounts.create_staff(
            session, rt, name="Staff Member", email=email, password=PASSWORD, role=role
        )


@asynccontextmanager
async def client_from(rt: Runtime, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """An API client whose requests come from ``address``."""
    transport = httpx.ASGITransport(app=create_app(runtime=rt), client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


class CountingPasswords:
    """Wraps the runtime's password hasher and counts the checks it makes."""

    def __init__(self, inner: Passwords) -> None:
        self.inner = inner
        self.checks = 0

    def hash(self, password: str) -> str:
        return self.inner.hash(password)

    def verify(self, hashed: str | None, password: str) -> bool:
        self.checks += 1
        return self.inner.verify(hashed, password)

    def needs_rehash(self, hashed: str) -> bool:
        return self.inner.needs_rehash(hashed)


def count_password_checks(rt: Runtime) -> CountingPasswords:
    counter = CountingPasswords(rt.passwords)
    rt.passwords = counter  # type: ignore[assignment]
    return counter


def shape(r: httpx.Response, login: str | None = None) -> tuple[int, Any, str | None]:
    """Status, body (the caller's own login blanked out) and Retry-After of an answer."""
    body = r.json()
    if login is not None and isinstance(body, dict) and body.get("login") == login:
        body = {**body, "login": "<login>"}
    return r.status_code, body, r.headers.get("retry-after")
