"""A demo operator: plans of every kind, SIM/eSIM/data-card stock, a subscriber with an
active line and a bound data card, an agent and an admin. Safe to load again: whatever
already exists is left exactly as it is.

Demo passwords are derived from the deployment's secret key, so each installation has
its own, yet every run prints the same ones. Never load the demo into a production
database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts import service as accounts
from openmvno.accounts.identity import check_password
from openmvno.accounts.models import Account, Role
from openmvno.catalog import service as catalog
from openmvno.catalog.models import Plan
from openmvno.catalog.schemas import PlanIn
from openmvno.commandline import plural
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.errors import InvalidInput
from openmvno.lines import service as lines
from openmvno.lines.identifiers import luhn_complete
from openmvno.lines.importer import import_lines
from openmvno.lines.models import Line, LineState
from openmvno.lines.states import transition
from openmvno.runtime import Runtime, build_runtime
from openmvno.security import keyed_digest

SUBSCRIBER_PHONE = "+8613800000000"
AGENT_EMAIL = "agent@demo.openmvno"
ADMIN_EMAIL = "admin@demo.openmvno"
DEMO_PERSONAL: dict[str, tuple[str | None, ...]] = {
    "subscriber": (SUBSCRIBER_PHONE, "演示用户"),
    "agent": (AGENT_EMAIL, "Demo Agent"),
    "admin": (ADMIN_EMAIL, "Demo Admin"),
}
"""What the password policy checks each demo password against (the account's own data)."""
_GB = 1024**3

PLANS: list[dict[str, Any]] = [
    {
        "code": "DATA-10G-30D", "kind": "data", "price_minor": 3000, "validity_days": 30,
        "name_zh": "10GB 月度流量包", "name_en": "10 GB monthly data",
        "data_bytes": 10 * _GB,
        "terms_zh": "自购买起 30 天有效；流量用完后停止上网，可购买加油包。",
        "terms_en": "Valid 30 days from purchase. Data stops when used up; buy an add-on for more.",
    },
    {
        "code": "VOICE-300M-30D", "kind": "voice", "price_minor": 2500, "validity_days": 30,
        "name_zh": "300 分钟通话套餐", "name_en": "300 minutes voice",
        "voice_seconds": 300 * 60, "sms_count": 50,
        "terms_zh": "含国内通话 300 分钟及短信 50 条，30 天有效。",
        "terms_en": "300 domestic minutes and 50 SMS, valid 30 days.",
    },
    {
        "code": "MIXED-5G-200M-30D", "kind": "mixed", "price_minor": 4900, "validity_days": 30,
        "name_zh": "畅联套餐 5GB+200 分钟", "name_en": "Combo 5 GB + 200 min",
        "data_bytes": 5 * _GB, "voice_seconds": 200 * 60, "sms_count": 100,
        "overage_rule": "charge_wallet",
        "overage_rates": {"data_mb": 5, "voice_min": 15, "sms": 10},
        "terms_zh": "30 天有效。超出部分从余额扣费："
        "流量 0.05 元/MB，通话 0.15 元/分钟，短信 0.10 元/条。",
        "terms_en": "Valid 30 days. Beyond the allowance the wallet is charged: "
        "¥0.05/MB, ¥0.15/min, ¥0.10/SMS.",
    },
    {
        "code": "ADDON-1G-7D", "kind": "addon", "price_minor": 1000, "validity_days": 7,
        "name_zh": "1GB 流量加油包", "name_en": "1 GB data add-on",
        "data_bytes": 1 * _GB,
        "terms_zh": "加油包 7 天有效，不改变主套餐到期日。",
        "terms_en": "Add-on valid 7 days; it does not move your plan's expiry date.",
    },
    {
        "code": "ROAM-ASIA-3G-7D", "kind": "data", "price_minor": 6800, "validity_days": 7,
        "name_zh": "亚洲漫游 3GB 7 天", "name_en": "Asia roaming 3 GB, 7 days",
        "data_bytes": 3 * _GB, "roaming_zones": ["HK", "MO", "TW", "JP", "KR", "SG", "TH"],
        "terms_zh": "在港澳台、日本、韩国、新加坡、泰国使用，7 天有效。",
        "terms_en": "For use in Hong Kong, Macau, Taiwan, Japan, Korea, Singapore and "
        "Thailand; valid 7 days.",
    },
    {
        "code": "TOPUP-50", "kind": "topup", "price_minor": 5000, "validity_days": 0,
        "name_zh": "充值 50 元", "name_en": "Top up ¥50",
        "terms_zh": "50 元存入账户余额，长期有效，可用于购买套餐或超出部分扣费。",
        "terms_en": "¥50 goes to your wallet, never expires, and pays for plans or overage.",
    },
]


def demo_password(rt: Runtime, role: str) -> str:
    """This deployment's demo password for ``role`` (stable across runs): the first
    candidate the password policy accepts (nearly always the first)."""
    for attempt in range(100):
        suffix = f":{attempt}" if attempt else ""
        candidate = "Demo-" + keyed_digest(rt.secret_key, f"demo-password:{role}{suffix}")[:10]
        try:
            check_password(candidate, personal=DEMO_PERSONAL.get(role, ()))
        except InvalidInput:
            continue
        return candidate
    raise AssertionError("no demo password passes the password policy")  # pragma: no cover


def _iccid(n: int) -> str:
    return luhn_complete(f"898600202600{n:07d}")


def _msisdn(n: int) -> str:
    return f"+86170202{n:05d}"


def _pin(n: int) -> str:
    return f"{(n * 7919 + 482193) % 1000000:06d}"


def _stock() -> list[str]:
    """CSV rows: 5 eSIM, 5 SIM, 5 data cards in stock, plus the subscriber's two lines."""
    rows = []
    for i in range(1, 6):
        rows.append(f"esim,{_iccid(i)},{_msisdn(i)},,DEMO-ESIM-{i:04d},")
        rows.append(f"sim,{_iccid(100 + i)},{_msisdn(100 + i)},SIM-2026-{i:04d},,")
        rows.append(f"datacard,{_iccid(200 + i)},{_msisdn(200 + i)},DC-2026-{i:04d},,{_pin(i)}")
    rows.append(f"esim,{_iccid(900)},{_msisdn(900)},,DEMO-ESIM-0900,")
    rows.append(f"datacard,{_iccid(901)},{_msisdn(901)},DC-2026-0901,,{_pin(901)}")
    return rows


@dataclass(frozen=True)
class Login:
    role: str
    login: str
    password: str


@dataclass(frozen=True)
class DemoResult:
    created: dict[str, int]
    """What this run added (all zero when the demo was already there)."""
    logins: list[Login]
    try_serial: str | None
    """A data card nobody has bound yet (as printed on its label) and its PIN."""
    try_secret: str | None
    plan_codes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(self.created.values())


async def _plans(session: AsyncSession, settings: Settings) -> int:
    existing = set(await session.scalars(select(Plan.code)))
    added = 0
    for row in PLANS:
        if row["code"] in existing:
            continue
        await catalog.create_plan(
            session, PlanIn.model_validate(row), actor=None,
            default_currency=settings.default_currency,
        )
        added += 1
    return added


async def _lines(session: AsyncSession, rt: Runtime) -> int:
    rows = _stock()
    wanted = {row.split(",")[1] for row in rows}
    have = set(await session.scalars(select(Line.iccid).where(Line.iccid.in_(wanted))))
    missing = [row for row in rows if row.split(",")[1] not in have]
    if not missing:
        return 0
    header = "kind,iccid,msisdn,device_serial,esim_matching_id,pin\n"
    summary = await import_lines(session, rt, header + "\n".join(missing) + "\n")
    return summary.created


async def _staff(session: AsyncSession, rt: Runtime, email: str, role: Role) -> int:
    if await session.scalar(select(Account.id).where(Account.email == email)):
        return 0
    name = "Demo Admin" if role is Role.admin else "Demo Agent"
    await accounts.create_staff(
        session, rt, name=name, email=email, password=demo_password(rt, role.value), role=role
    )
    return 1


async def _subscriber(session: AsyncSession, rt: Runtime) -> int:
    """The demo subscriber, an active eSIM on the 10 GB plan (20 days left) and a bound card."""
    account = await session.scalar(select(Account).where(Account.phone == SUBSCRIBER_PHONE))
    if account is not None:
        return 0
    now = clock.now()
    account = Account(
        id=uuid.uuid4(), role=Role.subscriber, name="演示用户", phone=SUBSCRIBER_PHONE,
        password_hash=rt.passwords.hash(demo_password(rt, "subscriber")),
        language="zh-CN", verified_at=now,
    )
    session.add(account)
    await session.flush()
    line = await session.scalar(select(Line).where(Line.iccid == _iccid(900)))
    plan = await catalog.get_plan(session, "DATA-10G-30D")
    if line is not None and line.account_id is None and line.state == LineState.inventory:
        line.account_id = account.id
        line.bound_at = now
        line.plan_id = plan.id
        line.expires_at = now + timedelta(days=20)
        await transition(session, line, LineState.active, "demo: bought DATA-10G-30D")
        await _grant(session, account.id, line, plan)
    await lines.bind_device(session, rt, account=account, serial="DC-2026-0901", secret=_pin(901))
    return 1


async def _grant(session: AsyncSession, account_id: uuid.UUID, line: Line, plan: Plan) -> None:
    """Fill the demo line's buckets when the ledger is installed (keyed, so never twice)."""
    try:
        from openmvno.ledger import service as ledger
    except ImportError:  # pragma: no cover - the ledger ships with the billing domain
        return
    assert line.expires_at is not None
    await ledger.grant_plan(
        session, account_id=account_id, line_id=line.id, plan=plan, order_id=None,
        valid_from=line.expires_at - timedelta(days=plan.validity_days),
        valid_until=line.expires_at, key=f"demo:{line.id}",
    )


async def _free_card(session: AsyncSession) -> tuple[str | None, str | None]:
    for i in range(1, 6):
        taken = await session.scalar(
            select(func.count()).select_from(Line).where(
                Line.device_serial == f"DC2026{i:04d}", Line.account_id.is_(None)
            )
        )
        if taken:
            return f"DC-2026-{i:04d}", _pin(i)
    return None, None


async def load_demo(settings: Settings) -> DemoResult:
    """Load the demo operator (migrations already applied). Idempotent."""
    rt = build_runtime(settings)
    try:
        async with unit_of_work(rt.sessions) as session:
            created = {
                "plans": await _plans(session, settings),
                "lines": await _lines(session, rt),
                "staff": await _staff(session, rt, AGENT_EMAIL, Role.agent)
                + await _staff(session, rt, ADMIN_EMAIL, Role.admin),
                "subscribers": await _subscriber(session, rt),
            }
            serial, secret = await _free_card(session)
        logins = [
            Login("subscriber", SUBSCRIBER_PHONE, demo_password(rt, "subscriber")),
            Login("agent", AGENT_EMAIL, demo_password(rt, "agent")),
            Login("admin", ADMIN_EMAIL, demo_password(rt, "admin")),
        ]
    finally:
        await rt.close()
    return DemoResult(
        created=created,
        logins=logins,
        try_serial=serial,
        try_secret=secret,
        plan_codes=[p["code"] for p in PLANS],
    )


def print_demo(
    console: Console,
    settings: Settings,
    result: DemoResult,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Tell the person at the terminal where to go and how to log in."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    base = f"http://{shown}:{port}"
    if result.changed:
        added = ", ".join(
            plural(n, what.removesuffix("s"), what) if what != "staff" else f"{n} staff"
            for what, n in result.created.items() if n
        )
        console.print(f"[green]Demo operator loaded[/green] ({added}).")
    else:
        console.print("[green]Demo operator already loaded[/green]; nothing changed.")
    console.print(f"Portal:      {base}/")
    console.print(f"API docs:    {base}/docs")
    if settings.dev_outbox_enabled:
        console.print(f"Dev outbox:  {base}/dev/outbox  (SMS and email land here)")
    table = Table(title="Demo logins")
    table.add_column("Role")
    table.add_column("Login")
    table.add_column("Password")
    for login in result.logins:
        table.add_row(login.role, login.login, login.password)
    console.print(table)
    if result.try_serial:
        console.print(
            f"Try binding a data card: serial [bold]{result.try_serial}[/bold], "
            f"PIN [bold]{result.try_secret}[/bold]"
        )
    else:
        console.print("Every demo data card is bound already.")
