"""Safe to deploy: production refuses development conveniences and unsafe settings, the dev
outbox does not exist there, every page carries security headers, and only a trusted proxy
may name the client address."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from pydantic import SecretStr
from typer.testing import CliRunner

from openmvno.app import create_app
from openmvno.channels import security_headers
from openmvno.config import ConfigurationError, Settings
from openmvno.db import unit_of_work
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxKind
from openmvno.runtime import Runtime, build_runtime

KEY = "production-secret-key-0123456789abcdef"
WEBHOOK = "sandbox-private-webhook-secret-0123456789"
TEMPLATE_DIRS = [
    Path(__file__).parents[1] / "src/openmvno/channels/portal/templates",
    Path(__file__).parents[1] / "src/openmvno/adapters/payments/templates",
    Path(__file__).parents[1] / "src/openmvno/receipts/templates",
]


# ---------------------------------------------------------------- refusals, as real commands


def _production_env(database_url: str, data_dir: Path) -> dict[str, str]:
    """A production environment that starts: every refusal below changes one thing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMVNO_")}
    env.update({
        "OPENMVNO_ENVIRONMENT": "production",
        "OPENMVNO_DATABASE_URL": database_url,
        "OPENMVNO_DATA_DIR": str(data_dir),
        "OPENMVNO_SECRET_KEY": KEY,
        "OPENMVNO_PUBLIC_URL": "https://mvno.example",
        "OPENMVNO_SECURE_COOKIES": "true",
        "OPENMVNO_PAYMENT_PROVIDER": "sandbox",
        "OPENMVNO_ALLOW_SANDBOX_PAYMENTS": "true",
        "OPENMVNO_SANDBOX_WEBHOOK_SECRET": WEBHOOK,
        "OPENMVNO_LOG_JSON": "false",
        # A real SMS gateway: production refuses the outbox-only SMS adapter.
        "OPENMVNO_SMS_ADAPTER": "smpp",
        "OPENMVNO_SMPP_SYSTEM_ID": "openmvno",
        "OPENMVNO_SMPP_PASSWORD": "smsc-password",
    })
    return env


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from openmvno.cli import app; app()", *args],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running after 120 s (not refused?)\n{err}") from None
    return proc.returncode, out, err


def _run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    return _finish(_start(args, env, cwd))


def _configuration_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("configuration:")]


REFUSALS: list[tuple[str, dict[str, str | None], str]] = [
    ("dev outbox page", {"OPENMVNO_DEV_OUTBOX": "true"},
     "configuration: OPENMVNO_DEV_OUTBOX=true is refused in production"),
    ("no secret key", {"OPENMVNO_SECRET_KEY": None},
     "configuration: OPENMVNO_SECRET_KEY is not set: set the same random string of at least 32"),
    ("short secret key", {"OPENMVNO_SECRET_KEY": "k" * 31},
     "configuration: OPENMVNO_SECRET_KEY is shorter than 32 characters"),
    ("sandbox not allowed", {"OPENMVNO_ALLOW_SANDBOX_PAYMENTS": None},
     "configuration: OPENMVNO_PAYMENT_PROVIDER=sandbox takes no real money: set "
     "OPENMVNO_PAYMENT_PROVIDER=stripe, or OPENMVNO_ALLOW_SANDBOX_PAYMENTS=true"),
    ("sandbox public test secret", {"OPENMVNO_SANDBOX_WEBHOOK_SECRET": "sandbox-webhook-secret"},
     "configuration: OPENMVNO_SANDBOX_WEBHOOK_SECRET is unset or the public test secret"),
    ("sandbox secret unset", {"OPENMVNO_SANDBOX_WEBHOOK_SECRET": None},
     "configuration: OPENMVNO_SANDBOX_WEBHOOK_SECRET is unset or the public test secret"),
    ("insecure cookies behind https", {"OPENMVNO_SECURE_COOKIES": "false"},
     "configuration: OPENMVNO_SECURE_COOKIES=false with an https:// OPENMVNO_PUBLIC_URL: "
     "set OPENMVNO_SECURE_COOKIES=true"),
    ("plain http public url", {"OPENMVNO_PUBLIC_URL": "http://mvno.example"},
     "configuration: OPENMVNO_PUBLIC_URL=http://mvno.example is not https"),
    ("public url unset", {"OPENMVNO_PUBLIC_URL": None},
     "configuration: OPENMVNO_PUBLIC_URL is not set"),
    ("environment misspelt", {"OPENMVNO_ENVIRONMENT": "prod"},
     "configuration: OPENMVNO_ENVIRONMENT: Input should be 'development' or 'production'"),
    ("trusted proxy not an address", {"OPENMVNO_TRUSTED_PROXIES": "10.0.0.1,proxy.internal"},
     "configuration: OPENMVNO_TRUSTED_PROXIES: 'proxy.internal' is not an IP address"),
    ("outbox-only SMS", {"OPENMVNO_SMS_ADAPTER": "outbox"},
     "configuration: OPENMVNO_SMS_ADAPTER=outbox is refused in production"),
    ("SMPP without an account", {"OPENMVNO_SMPP_SYSTEM_ID": None},
     "configuration: OPENMVNO_SMS_ADAPTER=smpp needs OPENMVNO_SMPP_SYSTEM_ID"),
]


@pytest.mark.parametrize(("change", "line"), [(c, line) for _, c, line in REFUSALS],
                         ids=[name for name, _, _ in REFUSALS])
def test_serve_and_worker_refuse_in_production_with_one_line(
    database_url: str, tmp_path: Path, change: dict[str, str | None], line: str
) -> None:
    env = _production_env(database_url, tmp_path / "data")
    for name, value in change.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    commands = (["serve", "--port", "1"], ["worker", "--once"])
    started = [_start(args, env, tmp_path) for args in commands]  # side by side: faster
    for args, proc in zip(commands, started, strict=True):
        code, out, err = _finish(proc)
        assert code == 2, (args, out, err)
        lines = _configuration_lines(err)
        assert len(lines) == 1 and lines[0].startswith(line), (args, err)
        assert "Traceback" not in err
    assert not (tmp_path / "data" / "secret.key").exists()


@pytest.mark.parametrize(
    "change",
    [{}, {"OPENMVNO_PUBLIC_URL": "http://127.0.0.1:8000", "OPENMVNO_SECURE_COOKIES": "false"}],
    ids=["https", "plain http on this machine"],
)
def test_worker_starts_with_safe_production_settings(
    database_url: str, tmp_path: Path, change: dict[str, str]
) -> None:
    env = {**_production_env(database_url, tmp_path / "data"), **change}
    code, out, err = _run(["worker", "--once"], env, tmp_path)
    assert code == 0, err
    assert "delivered 0 message(s)" in out
    assert _configuration_lines(err) == []
    assert "OPENMVNO_SMS_ADAPTER" not in err  # SMPP is a real gateway: no warning


def test_serve_demo_with_explicit_production_is_still_checked(
    database_url: str, tmp_path: Path
) -> None:
    env = _production_env(database_url, tmp_path / "data")
    del env["OPENMVNO_SECRET_KEY"]
    code, _, err = _run(["serve", "--demo", "--port", "1"], env, tmp_path)
    assert code == 2
    assert _configuration_lines(err)[0].startswith(
        "configuration: OPENMVNO_SECRET_KEY is not set"
    )


def _clear_openmvno_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPENMVNO_"):
            monkeypatch.delenv(name)


def test_serve_demo_means_development_unless_said_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from openmvno.cli import settings_for

    _clear_openmvno_env(monkeypatch)
    settings = settings_for(tmp_path, serving=True, demo=True)
    assert settings.environment == "development"
    assert settings.dev_outbox_enabled
    with pytest.raises(typer.Exit) as refused:
        settings_for(tmp_path, serving=True)
    assert refused.value.exit_code == 2


def test_app_factory_for_several_workers_refuses_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from openmvno.app import app_from_env

    _clear_openmvno_env(monkeypatch)
    monkeypatch.setenv("OPENMVNO_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        app_from_env()
    assert stopped.value.code == 2
    assert "configuration: OPENMVNO_SECRET_KEY is not set" in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_hands_uvicorn_the_trusted_proxies_only(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workers: str
) -> None:
    """uvicorn alone would trust 127.0.0.1 (or FORWARDED_ALLOW_IPS): serve turns its own
    handling off and the app applies OPENMVNO_TRUSTED_PROXIES, on both paths."""
    import uvicorn

    from openmvno import logs
    from openmvno.cli import app

    seen: dict[str, Any] = {}
    apps: list[Any] = []

    def run(app: Any, **options: Any) -> None:
        apps.append(app)
        seen.update(options)

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr(logs, "setup_logging", lambda **_: None)
    # CliRunner restores each of these afterwards (serve --workers writes some of them).
    env: dict[str, str | None] = {
        "OPENMVNO_ENVIRONMENT": "development",
        "OPENMVNO_DATABASE_URL": settings.database_url,
        "OPENMVNO_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7",
        "OPENMVNO_DATA_DIR": None, "OPENMVNO_PUBLIC_URL": None, "OPENMVNO_EMBEDDED_WORKER": None,
        "FORWARDED_ALLOW_IPS": "*",
    }
    result = CliRunner().invoke(
        app, ["serve", "--workers", workers, "--data-dir", str(tmp_path), "--no-worker"], env=env
    )
    for built in apps:
        if not isinstance(built, str):
            asyncio.run(built.state.runtime.close())
    assert result.exit_code == 0, result.output
    assert seen["proxy_headers"] is False
    assert seen["forwarded_allow_ips"] == "10.0.0.0/8,192.0.2.7"


# ---------------------------------------------------------------- the secret key


def test_production_never_generates_a_secret_key(settings: Settings, tmp_path: Path) -> None:
    prod = settings.model_copy(
        update={"environment": "production", "secret_key": SecretStr(""), "data_dir": tmp_path}
    )
    rt = build_runtime(prod)
    with pytest.raises(ConfigurationError, match="OPENMVNO_SECRET_KEY is not set"):
        _ = rt.secret_key
    assert not (tmp_path / "secret.key").exists()


def test_development_processes_share_one_generated_key(
    settings: Settings, tmp_path: Path
) -> None:
    dev = settings.model_copy(update={"secret_key": SecretStr(""), "data_dir": tmp_path})
    one, two = build_runtime(dev), build_runtime(dev)
    try:
        assert one.secret_key == two.secret_key and len(one.secret_key) >= 32
        assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]  # no stray temp file
    finally:
        asyncio.run(one.close())
        asyncio.run(two.close())


# ---------------------------------------------------------------- production app in-process


def _production(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={
        "environment": "production", "secret_key": SecretStr(KEY),
        "sandbox_webhook_secret": SecretStr(WEBHOOK), "allow_sandbox_payments": True,
        **changes,
    })


@pytest.fixture
async def prod_client(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The app in production on the test database (``rt`` wipes it afterwards)."""
    prod = build_runtime(_production(rt.settings))
    app = create_app(runtime=prod)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as c:
            yield c
    finally:
        await prod.close()


async def test_reset_code_cannot_be_read_from_the_dev_outbox_in_production(
    prod_client: httpx.AsyncClient, rt: Runtime
) -> None:
    """The takeover path of the issue: ask for a reset code, read it at /dev/outbox."""
    phone = "+8613800138777"
    r = await prod_client.post(
        "/api/v1/auth/register",
        json={"name": "Li Lei", "phone": phone, "password": "lantern-orbit-Qx7"},
    )
    assert r.status_code == 201, r.text
    r = await prod_client.post("/api/v1/auth/password-reset", json={"login": phone})
    assert r.status_code == 202
    # The messages are queued for a gateway, not lost: only the page is gone.
    async with unit_of_work(rt.sessions) as session:
        queued = await notifications.list_messages(session, kinds=[OutboxKind.sms])
    assert queued and all(m.recipient == phone for m in queued)
    reset_code = re.findall(r"\b\d{6}\b", queued[0].body)[0]
    for accept in ("application/json", "text/html"):
        page = await prod_client.get("/dev/outbox", headers={"Accept": accept})
        assert page.status_code == 404
        assert phone not in page.text and reset_code not in page.text
    home = await prod_client.get("/")
    assert "/dev/outbox" not in home.text


async def test_dev_outbox_page_stays_off_in_production_even_when_asked(rt: Runtime) -> None:
    prod = build_runtime(_production(rt.settings, dev_outbox=True))
    app = create_app(runtime=prod)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as c:
            assert (await c.get("/dev/outbox")).status_code == 404
    finally:
        await prod.close()
    assert _production(rt.settings, dev_outbox=True).deploy_problems()[0].startswith(
        "OPENMVNO_DEV_OUTBOX=true is refused in production"
    )


async def test_development_can_turn_the_dev_outbox_page_off(rt: Runtime) -> None:
    app = create_app(rt.settings.model_copy(update={"dev_outbox": False}))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as c:
            assert (await c.get("/dev/outbox")).status_code == 404
    finally:
        await app.state.runtime.close()


def test_sandbox_public_test_secret_exists_only_in_development() -> None:
    assert Settings(environment="development").sandbox_webhook_secret.get_secret_value() == (
        "sandbox-webhook-secret"
    )
    assert Settings(environment="production").sandbox_webhook_secret.get_secret_value() == ""
    assert Settings().environment == "production"


# ---------------------------------------------------------------- security headers


def _directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


@pytest.mark.parametrize(
    "path", ["/", "/login", "/register", "/plans", "/topup", "/password/forgot", "/nowhere"]
)
async def test_portal_pages_carry_security_headers(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.headers["content-type"].startswith(("text/html", "application/problem+json"))
    policy = _directives(r.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert "'self'" in policy["form-action"]
    assert not any("unsafe" in source for sources in policy.values() for source in sources)
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in r.headers  # cookies are not secure here


async def test_api_answers_carry_them_too(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/plans")
    assert r.status_code == 200
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in r.headers


async def test_hsts_only_with_secure_cookies(rt: Runtime) -> None:
    app = create_app(rt.settings.model_copy(update={"secure_cookies": True}))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="https://t") as c:
            r = await c.get("/login")
    finally:
        await app.state.runtime.close()
    assert r.headers["strict-transport-security"] == "max-age=31536000"


def test_templates_have_no_inline_script_or_style() -> None:
    """The policy allows no inline script; styles only as files (the receipt's one
    <style> block is allowed by its hash, see the next test)."""
    found = []
    for directory in TEMPLATE_DIRS:
        for template in directory.glob("*.html"):
            text = template.read_text()
            for pattern in (r"<script(?![^>]*\ssrc=)[^>]*>", r"\sstyle\s*=", r"\son[a-z]+\s*=",
                            r"javascript:"):
                if re.search(pattern, text, re.IGNORECASE):
                    found.append(f"{template.name}: {pattern}")
            if "<style" in text and template.name != "receipt.html":
                found.append(f"{template.name}: <style>")
    assert found == []


async def test_the_printable_receipt_keeps_its_style(client: httpx.AsyncClient) -> None:
    from openmvno.receipts import service as receipts
    from openmvno.receipts.models import Receipt

    receipt = Receipt(
        number="R-1", buyer="Li Lei", msisdn=None, total_minor=3000, currency="CNY",
        payment_method="card", issued_at=datetime(2026, 12, 1, tzinfo=UTC),
        items=[{"name_zh": "月包", "name_en": "Monthly", "quantity": 1, "amount_minor": 3000}],
    )
    html = receipts.render_html(receipt, language="en", operator="OpenMVNO")
    styles = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    assert styles
    policy = _directives((await client.get("/")).headers["content-security-policy"])
    for css in styles:
        assert security_headers.csp_hash(css) in policy["style-src"]


async def test_sandbox_pay_pages_style_comes_from_a_file(client: httpx.AsyncClient) -> None:
    css = await client.get("/sandbox/static/sandbox.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "--accent" in css.text
    base = (TEMPLATE_DIRS[1] / "sandbox_base.html").read_text()
    assert 'href="/sandbox/static/sandbox.css"' in base


async def test_api_docs_are_served_offline_without_inline_script(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/docs")
    assert r.status_code == 200
    assert re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL) == []
    policy = _directives(r.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert r.headers["x-frame-options"] == "DENY"
    # Every script and style the page loads comes from this server (no CDN: works offline).
    sources = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert sources and all(s.startswith("/") for s in sources)
    for source in sources:
        asset = await client.get(source)
        assert asset.status_code == 200, source
    bundle = await client.get("/docs/assets/swagger-ui-bundle.js")  # Swagger UI 5 (OpenAPI 3.1)
    assert "SwaggerUIBundle" in bundle.text


async def test_form_action_allows_the_provider_redirect_only_with_stripe(
    rt: Runtime,
) -> None:
    """Chrome applies form-action to the redirect after a POST: a card payment at Stripe
    redirects to the provider's (then the bank's) pages; the sandbox stays on this site."""
    sandbox = _directives(security_headers.page_policy(rt.settings))
    assert sandbox["form-action"] == ["'self'", "http://testserver"]
    stripe = _directives(
        security_headers.page_policy(rt.settings.model_copy(update={"payment_provider": "stripe"}))
    )
    assert stripe["form-action"] == ["'self'", "http://testserver", "https:"]


# ---------------------------------------------------------------- trusted proxies


async def _lookups(settings: Settings, forwarded: list[str]) -> list[int]:
    runtime = build_runtime(settings)
    app = create_app(runtime=runtime)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return [
                (await c.post("/api/v1/guest/topup/lookup", json={"msisdn": "13900000000"},
                              headers={"X-Forwarded-For": address})).status_code
                for address in forwarded
            ]
    finally:
        await runtime.close()


async def test_spoofed_forwarded_for_does_not_escape_the_rate_limit(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="openmvno.http")
    settings = rt.settings.model_copy(update={"guest_lookups_per_hour": 2})
    spoofed = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    assert await _lookups(settings, spoofed) == [404, 404, 429]
    clients = {rec.__dict__["client"] for rec in caplog.records if rec.name == "openmvno.http"}
    assert clients == {"203.0.113.9"}


async def test_a_trusted_proxy_names_the_client(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="openmvno.http")
    settings = rt.settings.model_copy(
        update={"guest_lookups_per_hour": 2, "trusted_proxies": ["203.0.113.0/24"]}
    )
    # Three people behind the proxy: each has a limit of their own.
    assert await _lookups(settings, ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [
        404, 404, 404,
    ]
    # The same person again: their own limit, whatever they put in front of the header.
    assert await _lookups(settings, ["198.51.100.1", "10.9.9.9, 198.51.100.1"]) == [404, 429]
    clients = [rec.__dict__["client"] for rec in caplog.records if rec.name == "openmvno.http"]
    assert clients == ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.1",
                       "198.51.100.1"]


def test_smpp_command_refuses_in_production_like_serve_and_worker(
    database_url: str, tmp_path: Path
) -> None:
    env = {**_production_env(database_url, tmp_path / "data"), "OPENMVNO_SMS_ADAPTER": "outbox"}
    code, _, err = _run(["smpp"], env, tmp_path)
    assert code == 2 and "Traceback" not in err
    assert _configuration_lines(err) == [
        line for line in _configuration_lines(err)
        if line.startswith("configuration: OPENMVNO_SMS_ADAPTER=outbox is refused")]
    assert len(_configuration_lines(err)) == 1
