"""Portal pages over plain HTTP: rendering, languages, sessions, CSRF, redirects."""

from __future__ import annotations

import httpx

from openmvno.runtime import Runtime
from tests.conftest import FrozenClock, last_code
from tests.portal.helpers import (
    PASSWORD,
    csrf_of,
    portal_login,
    post_form,
    register_verified,
    text_of,
)


async def test_landing_page_offers_plans_login_and_register(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    for href in ('href="/plans"', 'href="/login"', 'href="/register"'):
        assert href in r.text


async def test_lang_query_switches_language_and_sticks_in_a_cookie(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/login?lang=zh-CN")
    assert "登录" in r.text and 'lang="zh-CN"' in r.text
    assert "lang=zh-CN" in r.headers["set-cookie"]
    r = await client.get("/register")  # no ?lang= any more: the cookie keeps Chinese
    assert "注册" in r.text
    r = await client.get("/register?lang=en")
    assert "Create your account" in r.text


async def test_register_error_keeps_values_but_never_the_password(
    client: httpx.AsyncClient,
) -> None:
    r = await post_form(
        client, "/register", "/register",
        {"name": "Han Meimei", "phone": "12345", "email": "", "password": "Secret-pass-1",
         "language": "en", "code_channel": "sms"},
    )
    assert r.status_code == 422
    assert "This is not a valid phone number." in text_of(r.text)
    assert 'value="Han Meimei"' in r.text and 'value="12345"' in r.text
    assert "Secret-pass-1" not in r.text


async def test_register_error_in_chinese(client: httpx.AsyncClient) -> None:
    await client.get("/?lang=zh-CN")
    r = await post_form(
        client, "/register", "/register",
        {"name": "韩梅梅", "phone": "13800138000", "password": "1234", "language": "zh-CN"},
    )
    assert r.status_code == 422
    assert "密码至少 10 个字符。" in text_of(r.text)


async def test_wrong_code_shows_attempts_left_then_right_code_verifies(
    client: httpx.AsyncClient,
) -> None:
    r = await post_form(
        client, "/register", "/register",
        {"name": "Li Lei", "phone": "13800138010", "password": PASSWORD, "language": "en",
         "code_channel": "sms"},
    )
    assert r.status_code == 303
    assert r.headers["location"].startswith("/verify?login=%2B8613800138010&sent=sms")
    page = await client.get(r.headers["location"])
    assert "We sent a 6-digit code by SMS to +8613800138010." in text_of(page.text)
    code = await last_code(client, "+8613800138010")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    r = await client.post(
        "/verify", data={"csrf": csrf_of(page.text), "login": "+8613800138010", "code": wrong}
    )
    assert r.status_code == 422
    assert "This code is wrong or no longer valid." in text_of(r.text)
    r = await client.post(
        "/verify", data={"csrf": csrf_of(page.text), "login": "+8613800138010", "code": wrong}
    )
    assert "This code is wrong or no longer valid." in text_of(r.text)  # one answer for all
    r = await client.post(
        "/verify", data={"csrf": csrf_of(page.text), "login": "+8613800138010", "code": code}
    )
    assert r.status_code == 303
    r = await client.get(r.headers["location"])
    assert "Your account is verified. Log in to continue." in text_of(r.text)
    assert 'value="+8613800138010"' in r.text


async def test_resend_honours_cooldown_then_email_fallback(
    client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    r = await post_form(
        client, "/register", "/register",
        {"name": "Li Lei", "phone": "13800138011", "email": "lilei@example.com",
         "password": PASSWORD, "language": "en", "code_channel": "sms"},
    )
    page = await client.get(r.headers["location"])
    token = csrf_of(page.text)
    r = await client.post(
        "/verify/resend", data={"csrf": token, "login": "+8613800138011", "channel": "sms"}
    )
    assert r.status_code == 303  # post/redirect/get: the code page says why
    page = await client.get(r.headers["location"])
    assert page.url.path == "/verify"
    assert "Please wait 60 seconds before asking for another code." in text_of(page.text)
    frozen.advance(seconds=61)
    r = await client.post(
        "/verify/resend", data={"csrf": token, "login": "+8613800138011", "channel": "email"}
    )
    assert r.status_code == 303
    page = await client.get(r.headers["location"])
    assert "We sent a 6-digit code by email to +8613800138011." in text_of(page.text)
    code = await last_code(client, "lilei@example.com")
    r = await client.post("/verify", data={"csrf": token, "login": "lilei@example.com", "code": code})
    assert r.status_code == 303


async def test_login_sets_a_safe_session_cookie_and_logout_ends_it(
    client: httpx.AsyncClient,
) -> None:
    await register_verified(client, phone="13800138012")
    r = await post_form(client, "/login", "/login", {"login": "138 0013 8012", "password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/account"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("omv_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # settings.secure_cookies is off in tests
    r = await client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/account"
    r = await client.get("/login?done=verified")
    token = csrf_of(r.text)  # the log-out button carries the session's token
    r = await client.post("/logout", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/login?done=logged_out"
    r = await client.get("/")
    assert r.status_code == 200 and 'href="/register"' in r.text


async def test_wrong_password_is_shown_and_login_kept(client: httpx.AsyncClient) -> None:
    await register_verified(client, phone="13800138013")
    r = await post_form(client, "/login", "/login", {"login": "13800138013", "password": "nope-nope"})
    assert r.status_code == 401
    assert "The phone number, email or password is wrong." in text_of(r.text)
    assert 'value="13800138013"' in r.text and "nope-nope" not in r.text


async def test_unverified_login_points_to_the_code_page(client: httpx.AsyncClient) -> None:
    await post_form(
        client, "/register", "/register",
        {"name": "Li Lei", "phone": "13800138014", "password": PASSWORD, "language": "en"},
    )
    r = await post_form(client, "/login", "/login", {"login": "13800138014", "password": PASSWORD})
    assert r.status_code == 403
    assert "Please verify your account" in text_of(r.text)
    assert 'href="/verify?login=13800138014"' in r.text


async def test_post_without_or_with_forged_csrf_is_refused_with_a_page(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/login", data={"login": "13800138015", "password": PASSWORD})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    assert "This form has expired" in text_of(r.text)
    await client.get("/login")  # gets a real double-submit cookie
    r = await client.post(
        "/login", data={"csrf": "forged.value", "login": "13800138015", "password": PASSWORD}
    )
    assert r.status_code == 403
    r = await client.post("/register", data={})
    assert r.status_code == 403


async def test_csrf_cookie_from_another_secret_is_refused(client: httpx.AsyncClient) -> None:
    client.cookies.set("omv_csrf", "abc.def")
    r = await client.post(
        "/login", data={"csrf": "abc.def", "login": "13800138016", "password": PASSWORD}
    )
    assert r.status_code == 403


async def test_logout_needs_the_session_token(client: httpx.AsyncClient) -> None:
    await register_verified(client, phone="13800138017")
    await portal_login(client, "13800138017")
    anon_page = await client.get("/register")
    r = await client.post("/logout", data={"csrf": "wrong"})
    assert r.status_code == 403
    # the anonymous double-submit token is not enough for a logged-in form
    anon = csrf_of(anon_page.text.split('action="/register"')[1])
    r = await client.post("/logout", data={"csrf": anon})
    assert r.status_code == 403
    r = await client.get("/")
    assert r.status_code == 303  # still logged in


async def test_next_must_be_a_same_site_path(client: httpx.AsyncClient) -> None:
    await register_verified(client, phone="13800138018")
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        page = await client.get("/login", params={"next": evil})
        assert 'name="next" value="/account"' in page.text
        r = await client.post(
            "/login",
            data={"csrf": csrf_of(page.text), "next": evil, "login": "13800138018",
                  "password": PASSWORD},
        )
        assert r.headers["location"] == "/account"
        await client.post("/logout", data={"csrf": csrf_of((await client.get("/register")).text)})


async def test_forgot_password_then_reset_with_code(client: httpx.AsyncClient) -> None:
    await register_verified(client, phone="13800138019")
    r = await post_form(
        client, "/password/forgot", "/password/forgot", {"login": "13800138019", "channel": "sms"}
    )
    assert r.status_code == 303
    page = await client.get(r.headers["location"])
    assert "If an account uses this phone number or email, we sent it a code." in text_of(page.text)
    code = await last_code(client, "+8613800138019")
    r = await client.post(
        "/password/reset",
        data={"csrf": csrf_of(page.text), "login": "13800138019", "code": "000000" if code != "000000" else "111111",
              "password": "Autumn-2027"},
    )
    assert r.status_code == 422 and "wrong or no longer valid" in text_of(r.text)
    r = await client.post(
        "/password/reset",
        data={"csrf": csrf_of(page.text), "login": "13800138019", "code": code,
              "password": "Autumn-2027"},
    )
    assert r.status_code == 303
    r = await post_form(client, "/login", "/login", {"login": "13800138019", "password": PASSWORD})
    assert r.status_code == 401
    await portal_login(client, "13800138019", "Autumn-2027")


async def test_session_cookie_is_secure_when_configured(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await register_verified(client, phone="13800138020")
    rt.settings.secure_cookies = True
    r = await post_form(client, "/login", "/login", {"login": "13800138020", "password": PASSWORD})
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("omv_session="))
    assert "Secure" in cookie and "HttpOnly" in cookie
