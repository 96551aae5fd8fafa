"""Nobody learns whether an account exists, or reads its profile, without a code or its
password (OWASP ASVS 5.0 V6.3.8): every anonymous flow answers an unknown login exactly as
it answers a real one, in the API and in the portal."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from openmvno.accounts.models import Account
from openmvno.db import unit_of_work
from openmvno.runtime import Runtime
from tests.accounts.helpers import (
    PASSWORD,
    client_from,
    count_password_checks,
    make_staff,
    register,
    register_verified,
    shape,
)
from tests.conftest import FrozenClock, last_code
from tests.portal.helpers import csrf_of, text_of

VERIFIED = "+8613800138101"
UNVERIFIED = "+8613800138102"
UNKNOWN = "+8613800138103"


async def _outbox(client: httpx.AsyncClient) -> list[dict[str, str]]:
    r = await client.get("/dev/outbox", headers={"Accept": "application/json"})
    messages: list[dict[str, str]] = r.json()["messages"]
    return messages


async def test_verify_on_a_verified_account_checks_the_code_and_shows_no_profile(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await make_staff(rt, "admin@demo.openmvno")
    r = await client.post(
        "/api/v1/auth/verify", json={"login": "admin@demo.openmvno", "code": "000000"}
    )
    assert r.status_code == 422 and r.json()["code"] == "code_invalid"
    assert not {"id", "role", "name", "email", "phone"} & set(r.json())

    code = await register_verified(client, VERIFIED)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    r = await client.post("/api/v1/auth/verify", json={"login": VERIFIED, "code": wrong})
    assert r.status_code == 422 and r.json()["code"] == "code_invalid"
    # The right code, sent again (a double submit), still works and shows nothing more.
    r = await client.post("/api/v1/auth/verify", json={"login": VERIFIED, "code": code})
    assert r.status_code == 200 and r.json() == {"verified": True}


async def test_verify_answers_a_wrong_code_the_same_for_every_login(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await make_staff(rt, "admin@demo.openmvno")
    await register_verified(client, VERIFIED)
    await register(client, UNVERIFIED)
    answers = set()
    for login in ("admin@demo.openmvno", VERIFIED, UNVERIFIED, UNKNOWN, "nobody@example.com"):
        r = await client.post("/api/v1/auth/verify", json={"login": login, "code": "999999"})
        status, body, _ = shape(r)
        answers.add((status, tuple(sorted(body.items()))))
    assert len(answers) == 1, answers
    status, body = answers.pop()
    assert status == 422 and dict(body)["code"] == "code_invalid"


async def test_an_expired_or_used_up_code_gets_the_same_answer_as_no_code(
    client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    await register(client, UNVERIFIED)
    code = await last_code(client, UNVERIFIED)
    unknown = await client.post("/api/v1/auth/verify", json={"login": UNKNOWN, "code": code})
    for _ in range(5):  # used up: five wrong codes void it
        r = await client.post("/api/v1/auth/verify", json={"login": UNVERIFIED, "code": "000000"})
        assert shape(r) == shape(unknown)
    r = await client.post("/api/v1/auth/verify", json={"login": UNVERIFIED, "code": code})
    assert shape(r) == shape(unknown)  # the right code no longer works, and says no more
    frozen.advance(minutes=2)
    r = await client.post("/api/v1/auth/resend", json={"login": UNVERIFIED})
    assert r.status_code == 202
    frozen.advance(minutes=11)  # expired
    fresh = await last_code(client, UNVERIFIED)
    r = await client.post("/api/v1/auth/verify", json={"login": UNVERIFIED, "code": fresh})
    assert shape(r) == shape(unknown)


async def test_resend_answers_the_same_for_every_login_including_the_cooldown(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await make_staff(rt, "admin@demo.openmvno")
    await register_verified(client, VERIFIED)
    await register(client, UNVERIFIED)
    frozen.advance(seconds=61)
    first, again = set(), set()
    for login in ("admin@demo.openmvno", VERIFIED, UNVERIFIED, UNKNOWN):
        r = await client.post("/api/v1/auth/resend", json={"login": login, "channel": "sms"})
        status, body, _ = shape(r, login)
        first.add((status, tuple(sorted(body.items()))))
        r = await client.post("/api/v1/auth/resend", json={"login": login, "channel": "sms"})
        status, body, retry = shape(r, login)
        again.add((status, tuple(sorted(body.items())), retry))
    assert len(first) == 1 and first.pop()[0] == 202
    assert len(again) == 1
    status, body, retry = again.pop()
    assert status == 429 and dict(body)["code"] == "code_cooldown" and retry == "60"
    # Only the account that needs a code got one (the verified ones got nothing).
    codes_to = [m["recipient"] for m in await _outbox(client)]
    assert codes_to.count(UNVERIFIED) == 2 and codes_to.count(VERIFIED) == 1


async def test_the_daily_cap_is_the_same_for_every_login_and_names_no_address(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await register(client, UNVERIFIED, email="lilei@example.com")
    frozen.advance(seconds=61)
    runs: dict[str, list[tuple[int, object, str | None]]] = {}
    for login in ("lilei@example.com", "nobody@example.com"):
        runs[login] = []
        for _ in range(rt.settings.otp_daily_cap + 1):
            r = await client.post("/api/v1/auth/resend", json={"login": login})
            runs[login].append(shape(r, login))
            frozen.advance(seconds=61)
    assert runs["lilei@example.com"] == runs["nobody@example.com"]
    status, body, _ = runs["nobody@example.com"][-1]
    assert status == 429 and isinstance(body, dict) and body["code"] == "code_daily_cap"
    assert "@" not in body["detail"] and "@" not in body["title"]


async def test_password_reset_request_answers_the_same_for_every_login(
    client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    await register_verified(client, VERIFIED)
    frozen.advance(seconds=61)
    runs = {}
    for login in (VERIFIED, UNKNOWN):
        first = await client.post("/api/v1/auth/password-reset", json={"login": login})
        second = await client.post("/api/v1/auth/password-reset", json={"login": login})
        runs[login] = [shape(first, login), shape(second, login)]
    assert runs[VERIFIED] == runs[UNKNOWN]
    assert [s for s, _, _ in runs[UNKNOWN]] == [202, 429]


async def test_password_reset_confirm_answers_a_wrong_code_the_same_for_every_login(
    client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    await register_verified(client, VERIFIED)
    frozen.advance(seconds=61)
    answers = []
    for login in (VERIFIED, UNKNOWN):
        r = await client.post("/api/v1/auth/password-reset", json={"login": login})
        assert r.status_code == 202
        r = await client.post(
            "/api/v1/auth/password-reset/confirm",
            json={"login": login, "code": "123456", "new_password": "Lantern-orchard-77"},
        )
        answers.append(shape(r))
    assert answers[0] == answers[1]
    assert answers[0][0] == 422 and answers[0][1]["code"] == "code_invalid"
    code = await last_code(client, VERIFIED)
    r = await client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"login": VERIFIED, "code": code, "new_password": "Lantern-orchard-77"},
    )
    assert r.status_code == 200 and r.json() == {"password_changed": True}


async def test_an_unknown_login_is_locked_out_exactly_like_an_account(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await register_verified(client, VERIFIED)
    checks = count_password_checks(rt)
    runs: dict[str, list[tuple[int, object, str | None]]] = {}
    work = {}
    for login in (VERIFIED, UNKNOWN):
        runs[login] = []
        before = checks.checks
        for _ in range(rt.settings.login_max_failures + 1):
            r = await client.post(
                "/api/v1/auth/token", json={"login": login, "password": "Wrong-guess-2026"}
            )
            runs[login].append(shape(r))
        work[login] = checks.checks - before
    assert runs[VERIFIED] == runs[UNKNOWN]
    assert work[VERIFIED] == work[UNKNOWN] == 5  # the same argon2 work; none once locked
    assert [s for s, _, _ in runs[UNKNOWN]] == [401] * 5 + [429]
    assert runs[UNKNOWN][-1][1]["code"] == "login_locked"  # type: ignore[index]
    frozen.advance(minutes=16)
    for login in (VERIFIED, UNKNOWN):
        r = await client.post(
            "/api/v1/auth/token", json={"login": login, "password": "Wrong-guess-2026"}
        )
        runs[login] = [shape(r)]
    assert runs[VERIFIED] == runs[UNKNOWN] and runs[UNKNOWN][0][0] == 401


async def test_registering_a_taken_number_answers_the_same_and_tells_its_owner(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    body = {"name": "Li Lei", "phone": UNVERIFIED, "password": PASSWORD}
    first = await client.post("/api/v1/auth/register", json=body)
    frozen.advance(seconds=61)
    again = await client.post(
        "/api/v1/auth/register",
        json={"name": "Mallory", "phone": "138 0013 8102", "password": "Other-tulip-2026"},
    )
    assert shape(again) == shape(first) and first.status_code == 201
    sent = [m for m in await _outbox(client) if m["recipient"] == UNVERIFIED]
    assert len(sent) == 2
    assert "already has one" in sent[0]["body"] and "Someone tried" in sent[0]["body"]
    assert "verification code" in sent[1]["body"]  # the first registration's code
    async with unit_of_work(rt.sessions) as session:
        accounts = await session.scalar(select(func.count()).select_from(Account))
        name = await session.scalar(select(Account.name).where(Account.phone == UNVERIFIED))
    assert accounts == 1 and name == "Li Lei"  # nothing created, nothing changed


async def test_registering_a_taken_email_tells_its_owner_by_email(
    client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    await register_verified(client, VERIFIED, email="lilei@example.com")
    frozen.advance(seconds=61)
    r = await client.post(
        "/api/v1/auth/register",
        json={"name": "Mallory", "email": "LiLei@example.com", "password": "Other-tulip-2026"},
    )
    assert r.status_code == 201
    assert r.json() == {"login": "lilei@example.com", "channel": "email",
                        "resend_after_seconds": 60, "expires_in_seconds": 600}
    mail = [m for m in await _outbox(client) if m["recipient"] == "lilei@example.com"]
    assert len(mail) == 1 and "already has one" in mail[0]["body"]


async def test_owners_get_at_most_three_registration_notices_a_day(
    client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    await register_verified(client, VERIFIED)
    for _ in range(5):
        frozen.advance(seconds=61)
        r = await client.post(
            "/api/v1/auth/register",
            json={"name": "Mallory", "phone": VERIFIED, "password": "Other-tulip-2026"},
        )
        assert r.status_code == 201
    notices = [m for m in await _outbox(client) if "already has one" in m["body"]]
    assert len(notices) == 3


async def test_registration_is_limited_per_client_address(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    rt.settings.code_requests_per_address = 3
    for n in range(3):
        await register(client, f"+86138001382{n:02d}")
    r = await client.post(
        "/api/v1/auth/register",
        json={"name": "Li Lei", "phone": "+8613800138299", "password": PASSWORD},
    )
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    r = await client.post("/api/v1/auth/resend", json={"login": "+8613800138200"})
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"  # the same budget
    async with client_from(rt, "198.51.100.7") as elsewhere:
        r = await elsewhere.post(
            "/api/v1/auth/register",
            json={"name": "Li Lei", "phone": "+8613800138299", "password": PASSWORD},
        )
    assert r.status_code == 201


# ---------------------------------------------------------------- the portal


async def _portal_post(client: httpx.AsyncClient, path: str, form: str, data: dict[str, str]) -> httpx.Response:
    page = await client.get(form)
    return await client.post(path, data={"csrf": csrf_of(page.text), **data})


async def test_portal_pages_answer_the_same_for_every_login(
    client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    await register_verified(client, VERIFIED)
    await register(client, UNVERIFIED)
    frozen.advance(seconds=61)
    seen: dict[str, list[tuple[int, str]]] = {}
    for login in (VERIFIED, UNVERIFIED, UNKNOWN):
        digits = login[-11:]
        answers = []
        r = await _portal_post(client, "/verify", "/verify", {"login": login, "code": "999999"})
        answers.append((r.status_code, text_of(r.text).replace(login, "<login>")))
        r = await _portal_post(
            client, "/verify/resend", "/verify", {"login": login, "channel": "sms"}
        )
        answers.append((r.status_code, r.headers.get("location", "").replace(digits, "<n>")))
        r = await _portal_post(
            client, "/verify/resend", "/verify", {"login": login, "channel": "sms"}
        )
        shown = await client.get(r.headers["location"])  # the code page says why
        answers.append((r.status_code, text_of(shown.text).replace(login, "<login>")))
        r = await _portal_post(
            client, "/password/forgot", "/password/forgot", {"login": login, "channel": "sms"}
        )
        answers.append((r.status_code, r.headers.get("location", "").replace(digits, "<n>")))
        r = await _portal_post(
            client, "/password/reset", "/password/reset",
            {"login": login, "code": "999999", "password": "Lantern-orchard-77"},
        )
        answers.append((r.status_code, text_of(r.text).replace(login, "<login>")))
        seen[login] = answers
    assert seen[VERIFIED] == seen[UNVERIFIED] == seen[UNKNOWN]
    statuses = [s for s, _ in seen[UNKNOWN]]
    assert statuses == [422, 303, 303, 303, 422]
    assert "This code is wrong or no longer valid." in seen[UNKNOWN][0][1]
    assert "Please wait" in seen[UNKNOWN][2][1]
