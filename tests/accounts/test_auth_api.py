"""Register → verify → log in → me, and the ways it can go wrong."""

from __future__ import annotations

import httpx

from openmvno.runtime import Runtime
from tests.conftest import FrozenClock, last_code, register_and_login

PASSWORD = "Quiet-harbour-2026"


async def test_register_verify_login_and_me(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/auth/register",
        json={"name": "韩梅梅", "phone": "138 0013 8000", "password": "Spring-2026", "language": "zh-CN"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["login"] == "+8613800138000" and r.json()["channel"] == "sms"

    r = await client.post("/api/v1/auth/token", json={"login": "13800138000", "password": "Spring-2026"})
    assert r.status_code == 403
    assert r.json()["code"] == "account_not_verified"

    code = await last_code(client, "+8613800138000")
    r = await client.post("/api/v1/auth/verify", json={"login": "+86 138-0013-8000", "code": code})
    assert r.status_code == 200 and r.json()["verified"] is True

    r = await client.post("/api/v1/auth/token", json={"login": "13800138000", "password": "Spring-2026"})
    assert r.status_code == 200
    tokens = r.json()
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    assert me.json()["name"] == "韩梅梅"
    assert me.json()["role"] == "subscriber"


async def test_code_message_is_localised_and_warns_against_sharing(client: httpx.AsyncClient) -> None:
    await client.post(
        "/api/v1/auth/register",
        json={"name": "韩梅梅", "phone": "13800138001", "password": "Spring-2026", "language": "zh-CN"},
    )
    r = await client.get("/dev/outbox", headers={"Accept": "application/json"})
    body = r.json()["messages"][0]["body"]
    assert "验证码" in body and "10" in body


async def test_wrong_code_counts_and_voids_after_five(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/auth/register", json={"name": "A B", "phone": "13800138002", "password": "Spring-2026"})
    good = await last_code(client, "+8613800138002")
    wrong = f"{(int(good) + 1) % 10**6:06d}"
    lefts = []
    for _ in range(5):
        r = await client.post("/api/v1/auth/verify", json={"login": "13800138002", "code": wrong})
        assert r.status_code == 422
        lefts.append(r.json()["code"])
    assert lefts == ["code_invalid"] * 5  # one answer for every failing code
    r = await client.post("/api/v1/auth/verify", json={"login": "13800138002", "code": good})
    assert r.status_code == 422
    assert r.json()["code"] == "code_invalid"


async def test_code_expires_after_ten_minutes(client: httpx.AsyncClient, frozen: FrozenClock) -> None:
    await client.post("/api/v1/auth/register", json={"name": "A B", "phone": "13800138003", "password": "Spring-2026"})
    code = await last_code(client, "+8613800138003")
    frozen.advance(minutes=10, seconds=1)
    r = await client.post("/api/v1/auth/verify", json={"login": "13800138003", "code": code})
    assert r.json()["code"] == "code_invalid"


async def test_resend_cooldown_then_email_fallback(client: httpx.AsyncClient, frozen: FrozenClock) -> None:
    await client.post(
        "/api/v1/auth/register",
        json={"name": "A B", "phone": "13800138004", "email": "ab@example.com", "password": "Spring-2026"},
    )
    r = await client.post("/api/v1/auth/resend", json={"login": "13800138004"})
    assert r.status_code == 429
    assert r.json()["code"] == "code_cooldown"
    assert int(r.headers["Retry-After"]) == 60
    frozen.advance(seconds=61)
    r = await client.post("/api/v1/auth/resend", json={"login": "13800138004", "channel": "email"})
    assert r.status_code == 202 and r.json()["channel"] == "email"
    old_sms_code = await last_code(client, "+8613800138004")
    email_code = await last_code(client, "ab@example.com")
    r = await client.post("/api/v1/auth/verify", json={"login": "13800138004", "code": old_sms_code})
    assert r.status_code == 422 or old_sms_code == email_code
    r = await client.post("/api/v1/auth/verify", json={"login": "ab@example.com", "code": email_code})
    assert r.status_code == 200


async def test_daily_cap_on_codes(client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock) -> None:
    await client.post("/api/v1/auth/register", json={"name": "A B", "phone": "13800138005", "password": "Spring-2026"})
    statuses = []
    for _ in range(rt.settings.otp_daily_cap):
        frozen.advance(seconds=61)
        r = await client.post("/api/v1/auth/resend", json={"login": "13800138005"})
        statuses.append(r.status_code)
    assert statuses[-1] == 429
    assert statuses.count(202) == rt.settings.otp_daily_cap - 1
    frozen.advance(hours=24)
    r = await client.post("/api/v1/auth/resend", json={"login": "13800138005"})
    assert r.status_code == 202


async def test_login_lockout_after_repeated_failures(client: httpx.AsyncClient, frozen: FrozenClock) -> None:
    headers = await register_and_login(client, phone="+8613800138006", password=PASSWORD)
    assert headers
    for _ in range(5):
        r = await client.post("/api/v1/auth/token", json={"login": "13800138006", "password": "wrong-pass-1"})
        assert r.status_code == 401
    r = await client.post("/api/v1/auth/token", json={"login": "13800138006", "password": PASSWORD})
    assert r.status_code == 429 and r.json()["code"] == "login_locked"
    frozen.advance(minutes=16)
    r = await client.post("/api/v1/auth/token", json={"login": "13800138006", "password": PASSWORD})
    assert r.status_code == 200


async def test_refresh_rotates_and_reuse_revokes_family(client: httpx.AsyncClient) -> None:
    await register_and_login(client, phone="+8613800138007", password=PASSWORD)
    r = await client.post("/api/v1/auth/token", json={"login": "13800138007", "password": PASSWORD})
    first = r.json()
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {first['access_token']}"})).status_code == 401
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401 and r.json()["code"] == "token_reused"
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert me.status_code == 401


async def test_access_token_expires(client: httpx.AsyncClient, frozen: FrozenClock) -> None:
    headers = await register_and_login(client, phone="+8613800138008", password=PASSWORD)
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    frozen.advance(minutes=16)
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401


async def test_password_reset_by_code(client: httpx.AsyncClient) -> None:
    await register_and_login(client, phone="+8613800138009", password=PASSWORD)
    r = await client.post("/api/v1/auth/password-reset", json={"login": "13800138009"})
    assert r.status_code == 202
    code = await last_code(client, "+8613800138009")
    r = await client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"login": "13800138009", "code": code, "new_password": "Autumn-2026"},
    )
    assert r.status_code == 200
    r = await client.post("/api/v1/auth/token", json={"login": "13800138009", "password": PASSWORD})
    assert r.status_code == 401
    r = await client.post("/api/v1/auth/token", json={"login": "13800138009", "password": "Autumn-2026"})
    assert r.status_code == 200


async def test_reset_for_unknown_login_looks_the_same(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/auth/password-reset", json={"login": "13900139000"})
    assert r.status_code == 202


async def test_register_rejects_bad_phone_and_weak_password(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/auth/register", json={"name": "A", "phone": "12345", "password": "Spring-2026"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_phone"
    r = await client.post("/api/v1/auth/register", json={"name": "A", "phone": "13800138010", "password": "12345678"})
    assert r.json()["code"] == "weak_password"
    r = await client.post("/api/v1/auth/register", json={"name": "A", "password": "Spring-2026"})
    assert r.json()["code"] == "contact_required"
    ok = await client.post("/api/v1/auth/register", json={"name": "A", "phone": "13800138010", "password": "Spring-2026"})
    assert ok.status_code == 201


async def test_errors_are_localised(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/auth/register",
        json={"name": "A", "phone": "12345", "password": "Spring-2026"},
        headers={"Accept-Language": "zh-CN,zh;q=0.9"},
    )
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "invalid_phone"
    assert body["title"] == "This is not a valid phone number."
    assert body["detail"] != body["title"]
