"""Browser harness (its fixtures are registered in tests/conftest.py): one real
``openmvno serve`` per test session (per xdist worker),
headless Debian Chromium driven by sync Playwright, and helpers that seed plans and
stock and read codes from the dev outbox.

Seeding talks to the server's database through the same services (never its HTTP
API), from a worker thread so it never meets Playwright's own event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, BrowserType, Playwright, sync_playwright
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.runtime import Runtime, build_runtime
from tests.pg import PG_URL, fresh_pg_database
from tests.shared_cache import shared_cache_dir

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
WORKER_NO = int(re.sub(r"\D", "", WORKER) or 0)
SECRET = "browser-test-secret-key-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
]
PASSWORD = "Spring-2026"
CODE = re.compile(r"\b(\d{6})\b")
T = TypeVar("T")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium, never a downloaded one."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


# Sync Playwright keeps its event loop marked as running in this thread for as long as it
# is started. pytest-playwright starts it once per session, which would break every async
# test that runs later on the same (xdist) worker ("cannot be called from a running event
# loop"). So Playwright and the browser live for one test only here (about a second).


@pytest.fixture
def playwright(_pw_api_request_contexts: Any) -> Iterator[Playwright]:
    pw = sync_playwright().start()
    if _pw_api_request_contexts:
        _pw_api_request_contexts.instrument(pw)
    try:
        yield pw
    finally:
        pw.stop()


@pytest.fixture
def browser_context_args(base_url: str) -> dict[str, Any]:
    return {"base_url": base_url}


@pytest.fixture
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    browser: BrowserType = getattr(playwright, browser_name or "chromium")
    return browser


@pytest.fixture
def launch_browser(
    browser_type_launch_args: dict[str, Any], browser_type: BrowserType
) -> Callable[..., Browser]:
    def launch(**kwargs: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture
def browser(launch_browser: Callable[[], Browser]) -> Iterator[Browser]:
    launched = launch_browser()
    try:
        yield launched
    finally:
        launched.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _in_thread(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a fresh loop in another thread."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result(timeout=60)


@dataclass(frozen=True)
class OwnedLine:
    id: uuid.UUID
    msisdn: str
    expires_at: datetime | None
    activation_code: str


@dataclass
class PortalServer:
    """A running ``openmvno serve`` and direct access to its database."""

    base_url: str
    settings: Settings
    process: subprocess.Popen[bytes]
    log_path: Path

    def run(self, work: Callable[[AsyncSession, Runtime], Coroutine[Any, Any, T]]) -> T:
        """Run ``work(session, rt)`` in one committed transaction on the server's database."""

        async def main() -> T:
            rt = build_runtime(self.settings)
            try:
                async with unit_of_work(rt.sessions) as session:
                    return await work(session, rt)
            finally:
                await rt.close()

        return _in_thread(main)

    def last_code(self, recipient: str) -> str:
        """The newest 6-digit code sent to ``recipient`` (from /dev/outbox as JSON)."""
        r = httpx.get(
            f"{self.base_url}/dev/outbox", headers={"Accept": "application/json"}, timeout=10
        )
        r.raise_for_status()
        for m in r.json()["messages"]:
            if m["recipient"] == recipient:
                match = CODE.search(m["body"])
                if match:
                    return match.group(1)
        raise AssertionError(f"no code sent to {recipient}")

    def give_esim(self, login: str, plan_code: str, days: int = 30) -> OwnedLine:
        """Hand the account an active eSIM line from stock on ``plan_code`` (what a paid
        order will do), for pages that show lines."""
        from openmvno.accounts import service as accounts
        from openmvno.catalog import service as catalog
        from openmvno.lines import esim
        from openmvno.lines import service as lines
        from openmvno.lines.models import LineKind, LineState
        from openmvno.lines.states import transition

        async def work(session: AsyncSession, rt: Runtime) -> OwnedLine:
            account = await accounts.get_by_login(session, rt, login)
            assert account is not None, login
            line = await lines.claim_inventory(session, account_id=account.id, kind=LineKind.esim)
            plan = await catalog.get_plan(session, plan_code)
            line.plan_id = plan.id
            line.expires_at = (clock.now() + timedelta(days=days)).replace(microsecond=0)
            await transition(session, line, LineState.active, "browser test: plan paid")
            await session.flush()
            code = esim.activation_code(rt, line)
            return OwnedLine(line.id, line.msisdn, line.expires_at, code)

        return self.run(work)


PLANS: list[dict[str, Any]] = [
    {
        "code": "BT-DATA-30", "kind": "data", "name_zh": "畅游 10GB 月包", "name_en": "Roam 10 GB Monthly",
        "price_minor": 3000, "validity_days": 30, "data_gb": 10, "roaming_zones": ["CN", "HK"],
        "terms_zh": "流量用完后停止上网。", "terms_en": "Data stops when the allowance is used up.",
    },
    {
        "code": "BT-MIX-59", "kind": "mixed", "name_zh": "全能 20GB 套餐", "name_en": "All-in 20 GB",
        "price_minor": 5900, "validity_days": 30, "data_gb": 20, "voice_minutes": 300,
        "sms_count": 100, "terms_zh": "国内通话。", "terms_en": "Domestic calls.",
    },
]
# Datacards printed with a serial and a PIN (the PIN is the bind secret).
DATACARDS = [(f"BTDC{WORKER_NO:02d}{i:04d}", f"P{WORKER_NO:01d}{i:04d}") for i in range(40)]


async def _seed(session: AsyncSession, rt: Runtime) -> None:
    from openmvno.catalog import service as catalog
    from openmvno.catalog.schemas import PlanIn
    from openmvno.lines.identifiers import luhn_complete
    from openmvno.lines.importer import import_lines

    for plan in PLANS:
        await catalog.create_plan(session, PlanIn(**plan), actor=None, default_currency="CNY")
    rows = ["kind,iccid,msisdn,device_serial,esim_matching_id,pin"]
    for i in range(40):
        iccid = luhn_complete(f"89860{WORKER_NO:02d}7{i:011d}")
        rows.append(f"esim,{iccid},+86170{WORKER_NO:02d}{i:06d},,BT-{WORKER_NO:02d}-{i:06d},")
    for i, (serial, pin) in enumerate(DATACARDS):
        iccid = luhn_complete(f"89860{WORKER_NO:02d}8{i:011d}")
        rows.append(f"datacard,{iccid},+86171{WORKER_NO:02d}{i:06d},{serial},,{pin}")
    await import_lines(session, rt, "\n".join(rows) + "\n")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def portal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalServer]:
    """``openmvno serve [--demo]`` on a free port with its own database; seeded once."""
    data_dir = tmp_path_factory.mktemp("portal-server")
    port = _free_port()
    env = {
        **os.environ,
        "OPENMVNO_ARGON2_TIME_COST": "1",
        "OPENMVNO_ARGON2_MEMORY_COST": "1024",
        "OPENMVNO_ARGON2_PARALLELISM": "1",
        "OPENMVNO_DEFAULT_LANGUAGE": "zh-CN",
        "OPENMVNO_SECRET_KEY": SECRET,
        "OPENMVNO_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "OPENMVNO_LOG_JSON": "true",
        "OPENMVNO_CACHE_DIR": str(shared_cache_dir(tmp_path_factory)),
    }
    env.pop("OPENMVNO_DATABASE_URL", None)
    if PG_URL:
        env["OPENMVNO_DATABASE_URL"] = _in_thread(
            lambda: fresh_pg_database(f"openmvno_browser_{os.environ.get('OPENMVNO_TEST_DB_TAG', '')}{WORKER}")
        )
    settings = Settings(
        data_dir=data_dir,
        database_url=env.get("OPENMVNO_DATABASE_URL", ""),
        secret_key=SECRET,  # type: ignore[arg-type]
        argon2_time_cost=1, argon2_memory_cost=1024, argon2_parallelism=1,
    )
    args = [
        sys.executable, "-c", "from openmvno.cli import app; app()", "serve",
        "--port", str(port), "--data-dir", str(data_dir),
    ]
    if importlib.util.find_spec("openmvno.demo") is not None:
        args.append("--demo")
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}"
    server = PortalServer(base_url, settings, process, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        server.run(_seed)
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def base_url(portal_server: PortalServer) -> str:
    """Playwright's relative ``page.goto("/login")`` goes to the test server."""
    return portal_server.base_url


_numbers = itertools.count(1)


@pytest.fixture
def new_phone() -> Callable[[], str]:
    """Unique, valid mainland mobile numbers (national form, as people type them)."""

    def make() -> str:
        return f"139{WORKER_NO:02d}{next(_numbers):06d}"

    return make


_cards = iter(DATACARDS)


@pytest.fixture
def datacard() -> tuple[str, str]:
    """An unbound data card from the seeded stock: (serial, PIN); a new one per test."""
    return next(_cards)
