"""Passwords are NFKC-normalised, visible, at least 10 characters, and not common or
guessable (zxcvbn, with the user's own phone, email and name as inputs)."""

from __future__ import annotations

import unicodedata
import uuid

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from openmvno import clock
from openmvno.accounts.identity import check_password
from openmvno.accounts.models import Account, Role
from openmvno.db import unit_of_work
from openmvno.errors import InvalidInput
from openmvno.runtime import Runtime
from tests.accounts.helpers import PASSWORD, register_verified
from tests.conftest import last_code

PHONE = "+8613800138401"
PERSONAL = (PHONE, "lilei@example.com", "Li Lei")

SHORT = "Use at least 10 characters for the password."
INVISIBLE = "The password contains an invisible or control character; type it again without it."
SYMBOLS = "Use letters or digits in the password, not only symbols or emoji."
GUESSABLE = "This password is common or easy to guess; try a few unrelated words together."
PERSONAL_INFO = "Do not use your name, phone number or email in the password."


@pytest.mark.parametrize(
    ("password", "title", "chinese"),
    [
        ("aaaaaaaa", SHORT, "密码至少 10 个字符。"),
        ("aaaaaaaaaaaa", GUESSABLE, "这个密码太常见或太容易被猜到"),
        ("Password1!", GUESSABLE, "这个密码太常见或太容易被猜到"),
        ("ＰＡＳＳＷＯＲＤ１２３", GUESSABLE, "这个密码太常见或太容易被猜到"),  # NFKC: PASSWORD123
        ("12345678901", GUESSABLE, "这个密码太常见或太容易被猜到"),
        ("\u200b" * 8, INVISIBLE, "密码中含有不可见字符或控制字符"),
        ("Quiet\u200bharbour-2026", INVISIBLE, "密码中含有不可见字符或控制字符"),
        ("Quiet\u202eharbour-2026", INVISIBLE, "密码中含有不可见字符或控制字符"),
        ("Quiet\tharbour-2026", INVISIBLE, "密码中含有不可见字符或控制字符"),
        ("😀" * 10, SYMBOLS, "不要只用符号或表情"),
        ("🔥🌈🍕🚀🎉🐱🌟💎🎸🍀", SYMBOLS, "不要只用符号或表情"),
        ("Lilei-harbour-2026", PERSONAL_INFO, "密码中不要包含姓名、手机号或邮箱。"),
        ("13800138401-harbour", PERSONAL_INFO, "密码中不要包含姓名、手机号或邮箱。"),
    ],
)
async def test_weak_passwords_are_refused_with_a_clear_localised_message(
    client: httpx.AsyncClient, password: str, title: str, chinese: str
) -> None:
    r = await client.post(
        "/api/v1/auth/register",
        json={"name": "Li Lei", "phone": PHONE, "email": "lilei@example.com",
              "password": password},
        headers={"Accept-Language": "zh-CN"},
    )
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "weak_password"
    assert body["title"] == title
    assert chinese in body["detail"]


@pytest.mark.parametrize(
    "password", ["Quiet-harbour-2026", "correct horse battery", "我爱北京天安门广场的早晨", "Lantern-orchard-77"]
)
def test_good_passwords_pass(password: str) -> None:
    assert check_password(password, personal=PERSONAL) == password


async def test_a_full_width_password_is_the_same_password(client: httpx.AsyncClient) -> None:
    wide = "Ｑｕｉｅｔ－ｈａｒｂｏｕｒ－２０２６"  # what a Chinese IME in full-width mode types
    assert unicodedata.normalize("NFKC", wide) == PASSWORD
    r = await client.post(
        "/api/v1/auth/register", json={"name": "Li Lei", "phone": PHONE, "password": wide}
    )
    assert r.status_code == 201, r.text
    code = await last_code(client, PHONE)
    assert (await client.post("/api/v1/auth/verify", json={"login": PHONE, "code": code})).is_success
    for typed in (PASSWORD, wide):
        r = await client.post("/api/v1/auth/token", json={"login": PHONE, "password": typed})
        assert r.status_code == 200, typed


async def test_a_hash_made_before_normalisation_still_works_and_is_renewed(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    wide = "Ｑｕｉｅｔ－ｈａｒｂｏｕｒ－２０２６"
    async with unit_of_work(rt.sessions) as session:
        session.add(Account(
            id=uuid.uuid4(), role=Role.subscriber, name="Li Lei", phone=PHONE,
            password_hash=rt.passwords.hash(wide), language="en", verified_at=clock.now(),
        ))
    r = await client.post("/api/v1/auth/token", json={"login": PHONE, "password": wide})
    assert r.status_code == 200
    async with unit_of_work(rt.sessions) as session:
        stored = await session.scalar(select(Account.password_hash).where(Account.phone == PHONE))
    assert stored is not None and rt.passwords.verify(stored, PASSWORD)
    r = await client.post("/api/v1/auth/token", json={"login": PHONE, "password": PASSWORD})
    assert r.status_code == 200


async def test_a_weak_new_password_on_reset_keeps_the_code_usable(
    client: httpx.AsyncClient,
) -> None:
    await register_verified(client, PHONE)
    r = await client.post("/api/v1/auth/password-reset", json={"login": PHONE})
    assert r.status_code == 202
    body = {"login": PHONE, "code": await last_code(client, PHONE)}
    r = await client.post("/api/v1/auth/password-reset/confirm",
                          json={**body, "new_password": "Password1!"})
    assert r.status_code == 422 and r.json()["code"] == "weak_password"
    r = await client.post("/api/v1/auth/password-reset/confirm",
                          json={**body, "new_password": "Lantern-orchard-77"})
    assert r.status_code == 200
    r = await client.post("/api/v1/auth/token",
                          json={"login": PHONE, "password": "Lantern-orchard-77"})
    assert r.status_code == 200


# ---------------------------------------------------------------- properties

_INVISIBLE = st.characters(categories=["Cc", "Cf"])


@settings(derandomize=True, max_examples=150, deadline=None)
@given(before=st.text(max_size=40), bad=_INVISIBLE, after=st.text(max_size=40))
def test_any_control_or_format_character_is_refused(before: str, bad: str, after: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_password(before + bad + after + "Quiet-harbour-2026")
    assert refused.value.code == "weak_password"


@settings(derandomize=True, max_examples=150, deadline=None)
@given(password=st.text(max_size=9))
def test_anything_shorter_than_ten_characters_is_refused(password: str) -> None:
    if len(unicodedata.normalize("NFKC", password)) >= 10:
        return  # a few characters expand under NFKC (e.g. U+FDFA)
    with pytest.raises(InvalidInput):
        check_password(password)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(password=st.text(min_size=1, max_size=60))
def test_an_accepted_password_is_its_nfkc_form_and_passes_again(password: str) -> None:
    try:
        normal = check_password(password, personal=PERSONAL)
    except InvalidInput:
        return
    assert normal == unicodedata.normalize("NFKC", password)
    assert 10 <= len(normal) <= 128
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in normal)
    assert check_password(normal, personal=PERSONAL) == normal
