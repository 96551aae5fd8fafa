"""Failed logins are counted by the database, not read-modified-written in Python: many
parallel guesses are each counted, and at most ``login_max_failures`` passwords are checked
before the lock. Guessing is also limited per client address, across accounts."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import select

from openmvno.accounts.models import Account
from openmvno.db import unit_of_work
from openmvno.runtime import Runtime
from tests.accounts.helpers import PASSWORD, client_from, count_password_checks, register_verified
from tests.conftest import FrozenClock

PHONE = "+8613800138301"
PARALLEL = 30


async def _account(rt: Runtime, phone: str = PHONE) -> Account:
    async with unit_of_work(rt.sessions) as session:
        account = await session.scalar(select(Account).where(Account.phone == phone))
    assert account is not None
    return account


async def _guess_in_parallel(client: httpx.AsyncClient, login: str) -> list[int]:
    async def guess(n: int) -> int:
        r = await client.post(
            "/api/v1/auth/token", json={"login": login, "password": f"Wrong-guess-{n:04d}"}
        )
        return r.status_code

    return list(await asyncio.gather(*(guess(n) for n in range(PARALLEL))))


async def test_parallel_wrong_passwords_are_each_counted(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    rt.settings.login_max_failures = 100  # no lock in the way: every guess must count
    await register_verified(client, PHONE)
    checks = count_password_checks(rt)
    statuses = await _guess_in_parallel(client, PHONE)
    assert statuses == [401] * PARALLEL
    assert (await _account(rt)).failed_logins == PARALLEL
    assert checks.checks == PARALLEL


async def test_parallel_wrong_passwords_check_at_most_the_limit_before_the_lock(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    limit = rt.settings.login_max_failures
    await register_verified(client, PHONE)
    checks = count_password_checks(rt)
    statuses = await _guess_in_parallel(client, PHONE)
    assert sorted(statuses) == [401] * limit + [429] * (PARALLEL - limit)
    assert checks.checks == limit
    account = await _account(rt)
    assert account.failed_logins == limit and account.locked_until is not None
    r = await client.post("/api/v1/auth/token", json={"login": PHONE, "password": PASSWORD})
    assert r.status_code == 429 and r.json()["code"] == "login_locked"  # even the right one


async def test_parallel_guesses_for_an_unknown_login_lock_the_same_way(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    limit = rt.settings.login_max_failures
    checks = count_password_checks(rt)
    statuses = await _guess_in_parallel(client, "+8613800138399")
    assert sorted(statuses) == [401] * limit + [429] * (PARALLEL - limit)
    assert checks.checks == limit


async def test_a_success_clears_the_count_and_the_lock_doubles_on_the_next_round(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await register_verified(client, PHONE)
    for _ in range(4):
        await client.post("/api/v1/auth/token", json={"login": PHONE, "password": "Wrong-1234"})
    r = await client.post("/api/v1/auth/token", json={"login": PHONE, "password": PASSWORD})
    assert r.status_code == 200
    assert (await _account(rt)).failed_logins == 0
    for _ in range(5):
        await client.post("/api/v1/auth/token", json={"login": PHONE, "password": "Wrong-1234"})
    r = await client.post("/api/v1/auth/token", json={"login": PHONE, "password": "Wrong-1234"})
    assert r.status_code == 429 and r.headers["retry-after"] == str(15 * 60)
    frozen.advance(minutes=15, seconds=1)
    for _ in range(5):
        await client.post("/api/v1/auth/token", json={"login": PHONE, "password": "Wrong-1234"})
    r = await client.post("/api/v1/auth/token", json={"login": PHONE, "password": "Wrong-1234"})
    assert r.status_code == 429 and r.headers["retry-after"] == str(30 * 60)  # second round


async def test_failures_from_one_address_across_accounts_stop_that_address_only(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    rt.settings.auth_failures_per_address = 6
    phones = [f"+86138001383{n:02d}" for n in range(4)]
    for phone in phones:
        await register_verified(client, phone)
    async with client_from(rt, "203.0.113.5") as attacker:
        for n in range(6):  # spread over accounts (and one nobody has): no account locks
            login = phones[n % 3] if n < 5 else "+8613800138398"
            r = await attacker.post(
                "/api/v1/auth/token", json={"login": login, "password": "Wrong-guess-2026"}
            )
            assert r.status_code == 401
        checks = count_password_checks(rt)
        r = await attacker.post(
            "/api/v1/auth/token", json={"login": phones[3], "password": PASSWORD}
        )
        assert r.status_code == 429 and r.json()["code"] == "rate_limited"
        assert int(r.headers["retry-after"]) == 15 * 60
        r = await attacker.post("/api/v1/auth/verify", json={"login": phones[3], "code": "123456"})
        assert r.status_code == 429 and r.json()["code"] == "rate_limited"
        assert checks.checks == 0  # refused before any password was checked
    async with client_from(rt, "198.51.100.8") as neighbour:
        r = await neighbour.post(
            "/api/v1/auth/token", json={"login": phones[3], "password": PASSWORD}
        )
        assert r.status_code == 200


async def test_wrong_codes_count_towards_the_address_limit(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    rt.settings.auth_failures_per_address = 3
    await register_verified(client, PHONE)
    async with client_from(rt, "203.0.113.6") as guesser:
        for n in range(3):
            r = await guesser.post(
                "/api/v1/auth/verify", json={"login": f"+86138001383{n:02d}", "code": "123456"}
            )
            assert r.status_code == 422
        r = await guesser.post("/api/v1/auth/token", json={"login": PHONE, "password": PASSWORD})
        assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    r = await client.post("/api/v1/auth/token", json={"login": PHONE, "password": PASSWORD})
    assert r.status_code == 200


async def test_parallel_resends_send_one_code(client: httpx.AsyncClient, rt: Runtime) -> None:
    """The cool-down is one per minute even when the requests arrive together."""
    login = f"li-{uuid.uuid4().hex[:8]}@example.com"
    statuses = await asyncio.gather(
        *(client.post("/api/v1/auth/password-reset", json={"login": login}) for _ in range(10))
    )
    assert sorted(r.status_code for r in statuses) == [202] + [429] * 9


async def test_two_registrations_racing_for_one_email_create_one_account(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Different logins, one shared email: the loser hits the unique key, answers the same
    201 and tells the owner (never a 500)."""
    async with client_from(rt, "198.51.100.9") as other:  # not queued behind one address
        first, second = await asyncio.gather(
            client.post("/api/v1/auth/register", json={
                "name": "Li Lei", "phone": PHONE, "email": "race@example.com",
                "password": PASSWORD,
            }),
            other.post("/api/v1/auth/register", json={
                "name": "Han Meimei", "email": "race@example.com", "password": "Other-tulip-2026",
            }),
        )
    assert (first.status_code, second.status_code) == (201, 201), (first.text, second.text)
    async with unit_of_work(rt.sessions) as session:
        emails = list(await session.scalars(select(Account.email)))
    assert emails == ["race@example.com"]
