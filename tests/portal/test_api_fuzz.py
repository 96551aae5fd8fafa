"""Property-based fuzzing of the whole REST API (schemathesis, from /openapi.json)
against a real running server: whatever the input, never a 500 or a stack trace.

Deterministic, so a failure found is a failure every run (and on every machine): the
coverage phase (boundary values of every parameter and field) is deterministic by design,
and the fuzzing phase is derandomised (a fixed seed per operation) with no example
database (nothing carried over from an earlier run). Bounded: 10 generated examples per
operation on top of the coverage cases; no health check needs suppressing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import settings

from openmvno.accounts import service as accounts
from openmvno.accounts.models import Role
from openmvno.app import create_app
from openmvno.config import Settings
from tests.browser_fixtures import PortalServer

# The schema the app itself publishes at /openapi.json (building it touches no database).
# The coverage phase (boundary values of every parameter and field, deterministic) runs in
# full, except for calling each path with methods it does not have (a 405 from the router).
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"phases": {"coverage": {"unexpected-methods": []}}}
)
schema = schemathesis.openapi.from_dict(
    create_app(Settings(database_url="sqlite+aiosqlite://", secret_key="x")).openapi(),  # type: ignore[arg-type]
    config=CONFIG,
)


@pytest.fixture(scope="session")
def bearer(portal_server: PortalServer) -> dict[str, str]:
    """Tokens for a subscriber and an admin, so generated calls get past authentication."""

    async def make_admin(session: Any, rt: Any) -> None:
        await accounts.create_staff(
            session, rt, name="Fuzz Admin", email="fuzz-admin@example.com",
            password="Stone-bridge-2026", role=Role.admin,
        )

    portal_server.run(make_admin)
    base = portal_server.base_url
    phone = "+8613912345678"
    httpx.post(f"{base}/api/v1/auth/register",
               json={"name": "Fuzz", "phone": phone, "password": "Quiet-river-2026"}, timeout=10)
    code = portal_server.last_code(phone)
    httpx.post(f"{base}/api/v1/auth/verify", json={"login": phone, "code": code}, timeout=10)
    tokens = {}
    for role, login, password in (("subscriber", phone, "Quiet-river-2026"),
                                  ("admin", "fuzz-admin@example.com", "Stone-bridge-2026")):
        r = httpx.post(f"{base}/api/v1/auth/token", json={"login": login, "password": password},
                       timeout=10)
        tokens[role] = r.json()["access_token"]
    return tokens


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, database=None)
def test_no_input_gives_a_server_error(
    case: Any, bearer: dict[str, str], portal_server: PortalServer
) -> None:
    staff_only = "/admin/" in case.path or case.path.endswith("/refund")
    role = "admin" if staff_only else "subscriber"
    response = case.call(
        base_url=portal_server.base_url,
        headers={"Authorization": f"Bearer {bearer[role]}"},
        timeout=30,
    )
    assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:500]}"
    content_type = response.headers.get("content-type") or [""]
    if isinstance(content_type, list):
        content_type = content_type[0]
    if response.status_code >= 400 and content_type.startswith("application/problem+json"):
        body = response.json()
        assert body["code"] and body["detail"]
    assert "Traceback" not in response.text
