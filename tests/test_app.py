"""The HTTP edge: probes, problem details for bad input, request ids and logs."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from openmvno.app import create_app
from openmvno.config import Settings
from openmvno.runtime import Runtime


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["database"] == "up"


async def test_ready_reports_a_dead_database(settings: Settings, tmp_path: object) -> None:
    broken = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none"}
    )
    app = create_app(broken)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["database"] == "down"
    await app.state.runtime.close()


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b'{"name": "A", "phone": ', 400, "invalid_json"),
        (b'{"name": 5, "phone": "13800138000", "password": "Spring-2026"}', 422, "validation_failed"),
        (b'{"name": "A", "phone": "13800138000", "password": "Spring-2026", "admin": true}', 422, "validation_failed"),
        (b"[1, 2]", 422, "validation_failed"),
    ],
)
async def test_bad_bodies_get_problem_details(
    client: httpx.AsyncClient, content: bytes, status: int, code: str
) -> None:
    r = await client.post(
        "/api/v1/auth/register", content=content, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code
    assert set(body) >= {"type", "title", "status", "detail", "code"}
    assert "Traceback" not in r.text


async def test_unknown_field_is_named_in_the_error(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/auth/token",
        json={"login": "13800138000", "password": "x", "remember": True},
        headers={"Accept-Language": "zh-CN"},
    )
    assert r.status_code == 422
    assert "remember" in r.json()["detail"]
    assert "以下字段缺失或无效" in r.json()["detail"]


async def test_oversized_body_is_refused(client: httpx.AsyncClient, rt: Runtime) -> None:
    big = b'{"name": "' + b"x" * (rt.settings.max_body_bytes + 10) + b'"}'
    r = await client.post("/api/v1/auth/register", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["code"] == "body_too_large"


async def test_oversized_chunked_body_is_refused(client: httpx.AsyncClient, rt: Runtime) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * (rt.settings.max_body_bytes // 4)

    r = await client.post("/api/v1/auth/register", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nothing-here", headers={"Accept-Language": "en"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await client.delete("/api/v1/me")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


async def test_protected_route_without_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/me")
    assert r.status_code == 401 and r.json()["code"] == "not_authenticated"
    r = await client.get("/api/v1/me", headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401 and r.json()["code"] == "token_invalid"


async def test_one_log_line_per_request_with_request_id_and_no_secrets(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="openmvno.http")
    r = await client.post(
        "/api/v1/auth/token?password=leak-me",
        json={"login": "13800138000", "password": "Sup3r-secret-pw"},
        headers={"X-Request-ID": "req-123"},
    )
    assert r.headers["x-request-id"] == "req-123"
    lines = [rec for rec in caplog.records if rec.name == "openmvno.http"]
    assert len(lines) == 1
    rec = lines[0]
    assert rec.__dict__["request_id"] == "req-123"
    assert rec.__dict__["status"] == r.status_code
    assert rec.__dict__["path"] == "/api/v1/auth/token"
    from openmvno.logs import JsonFormatter

    line = JsonFormatter().format(rec)
    assert json.loads(line)["request_id"] == "req-123"
    assert "Sup3r-secret-pw" not in caplog.text and "leak-me" not in caplog.text


async def test_openapi_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/auth/register" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_dev_outbox_lists_messages_newest_first(client: httpx.AsyncClient) -> None:
    for phone in ("13800138020", "13800138021"):
        await client.post(
            "/api/v1/auth/register", json={"name": "A B", "phone": phone, "password": "Spring-2026"}
        )
    data = (await client.get("/dev/outbox", headers={"Accept": "application/json"})).json()
    assert [m["recipient"] for m in data["messages"]] == ["+8613800138021", "+8613800138020"]
    assert {m["channel"] for m in data["messages"]} == {"sms"}
    html = await client.get("/dev/outbox")
    assert html.headers["content-type"].startswith("text/html")
    assert "+8613800138021" in html.text


async def test_dev_outbox_does_not_exist_with_real_adapters(rt: Runtime) -> None:
    settings = rt.settings.model_copy(update={"sms_adapter": "smpp", "email_adapter": "smtp"})
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/dev/outbox", headers={"Accept": "application/json"})
    assert r.status_code == 404
    await app.state.runtime.close()


def test_commands_refuse_settings_this_release_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from openmvno.cli import app

    monkeypatch.setenv("OPENMVNO_PAYMENT_PROVIDER", "stripe")
    monkeypatch.delenv("OPENMVNO_STRIPE_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "OPENMVNO_STRIPE_API_KEY" in result.output
