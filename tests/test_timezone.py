"""The operator's time zone: every date a person sees (portal, receipts, notices, command
output) is in ``settings.timezone`` (default Asia/Shanghai), checked near midnight UTC
where the two calendars disagree; quiet hours are in that zone too; a wrong zone stops
a process with one clear line."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from openmvno import formatting
from openmvno.accounts.models import Account
from openmvno.cli import app as cli_app
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.formatting import formatter, next_send_time, to_operator
from openmvno.lines.models import Line
from openmvno.runtime import Runtime, build_runtime
from tests.conftest import FrozenClock
from tests.orders.helpers import fund_wallet, give_line, order, pay, seed_plans, subscriber
from tests.portal.helpers import portal_login, register_verified

LATE_UTC = datetime(2026, 12, 1, 16, 30, tzinfo=UTC)
"""16:30 on 1 December in UTC is 00:30 on 2 December in Shanghai (UTC+8)."""


def test_a_date_near_midnight_utc_reads_as_the_next_day_in_shanghai() -> None:
    assert formatter("en").date(LATE_UTC) == "2026-12-02 00:30"
    assert formatter("zh-CN").date(LATE_UTC) == "2026-12-02 00:30"
    assert formatter("zh-CN").day(LATE_UTC) == "2026年12月2日"
    assert formatter("en").day(LATE_UTC) == "December 2, 2026"
    assert formatter("en").date(LATE_UTC, tz="UTC") == "2026-12-01 16:30"
    assert formatter("en").day(LATE_UTC, tz="America/New_York") == "December 1, 2026"
    assert to_operator(LATE_UTC).utcoffset() == timedelta(hours=8)
    assert formatter("en").date(None) == "—"


@pytest.mark.parametrize(("now", "expected"), [
    # 23:30 in Shanghai: quiet until 08:00 the next morning (00:00 UTC)
    (datetime(2026, 12, 1, 15, 30, tzinfo=UTC), datetime(2026, 12, 2, 0, 0, tzinfo=UTC)),
    # 04:30 in Shanghai: quiet until 08:00 the same morning
    (datetime(2026, 12, 1, 20, 30, tzinfo=UTC), datetime(2026, 12, 2, 0, 0, tzinfo=UTC)),
    # 08:00 exactly: the quiet hours are over
    (datetime(2026, 12, 2, 0, 0, tzinfo=UTC), datetime(2026, 12, 2, 0, 0, tzinfo=UTC)),
    # 21:59 in Shanghai: not yet quiet
    (datetime(2026, 12, 1, 13, 59, tzinfo=UTC), datetime(2026, 12, 1, 13, 59, tzinfo=UTC)),
])
def test_quiet_hours_are_in_the_operators_zone(now: datetime, expected: datetime) -> None:
    assert next_send_time(now, start="22:00", end="08:00", tz="Asia/Shanghai") == expected


def test_quiet_hours_from_settings_and_edge_cases() -> None:
    utc = Settings(timezone="UTC", quiet_hours_start="01:00", quiet_hours_end="06:00")
    at_two = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    assert next_send_time(at_two, settings=utc) == datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    none = Settings(timezone="UTC", quiet_hours_start="22:00", quiet_hours_end="22:00")
    assert next_send_time(at_two, settings=none) == at_two  # equal ends: no quiet hours


def test_a_wrong_zone_or_quiet_hour_is_one_configuration_line(tmp_path: Path) -> None:
    env = {"OPENMVNO_DATA_DIR": str(tmp_path), "OPENMVNO_DATABASE_URL": "",
           "OPENMVNO_ENVIRONMENT": "development", "OPENMVNO_TIMEZONE": "Asia/Shangai",
           "OPENMVNO_QUIET_HOURS_END": "8am"}
    r = CliRunner().invoke(cli_app, ["worker", "--once"], env=env)
    assert r.exit_code == 2
    assert "Traceback" not in r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines == [
        "configuration: OPENMVNO_TIMEZONE: 'Asia/Shangai' is not a known IANA time zone "
        "(e.g. Asia/Shanghai, Asia/Hong_Kong, UTC)",
        "configuration: OPENMVNO_QUIET_HOURS_END: '8am' is not a time of day HH:MM "
        "(24-hour clock, e.g. 22:00)",
    ]
    with pytest.raises(Exception, match="OPENMVNO_TIMEZONE"):
        build_runtime(Settings(timezone="../etc/passwd", data_dir=tmp_path))


async def test_receipt_and_portal_dates_are_shown_in_the_operators_zone(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    frozen.now = datetime(2026, 11, 25, 16, 30, tzinfo=UTC)  # 00:30 on the 26th in Shanghai
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    await fund_wallet(rt, me, 1500)
    o = (await order(client, headers, {"kind": "plan", "plan_code": "D7",
                                       "line_id": str(line.id)})).json()
    assert (await pay(client, headers, o["id"], "wallet")).status_code == 201
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    receipt = got["result"]["receipt_id"]
    html = await client.get(f"/api/v1/receipts/{receipt}.html", headers=headers)
    assert "2026-11-26 00:30" in html.text
    assert "2026-11-25 16:30" not in html.text
    # The line runs 7 days: until 2 December 16:30 UTC, 3 December 00:30 in Shanghai.
    async with rt.sessions() as s:
        held = await s.get(Line, line.id)
        assert held is not None
    assert held.expires_at == datetime(2026, 12, 2, 16, 30, tzinfo=UTC)
    balance = (await client.get(f"/api/v1/lines/{line.id}/balance", headers=headers)).json()
    assert "2026-12-03 00:30" in str(balance)


async def test_the_account_page_shows_the_expiry_in_the_operators_zone(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    phone = f"138{uuid.uuid4().int % 10**8:08d}"
    await register_verified(client, phone=phone)
    await portal_login(client, phone)
    async with unit_of_work(rt.sessions) as s:
        account = await s.scalar(select(Account).where(Account.phone == "+86" + phone))
        assert account is not None
        account_id = account.id
    await give_line(rt, account_id, expires_at=LATE_UTC)
    page = await client.get("/account")
    assert page.status_code == 200, page.text
    assert "2026-12-02 00:30" in page.text
    formatting.use_timezone("UTC")
    try:
        assert "2026-12-01 16:30" in (await client.get("/account")).text
    finally:
        formatting.use_timezone(rt.settings.timezone)


async def test_a_receipt_issued_on_new_years_eve_in_utc_carries_the_new_year(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    frozen.now = datetime(2026, 12, 31, 16, 30, tzinfo=UTC)  # 2027-01-01 00:30 in Shanghai
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    await fund_wallet(rt, me, 1500)
    o = (await order(client, headers, {"kind": "plan", "plan_code": "D7",
                                       "line_id": str(line.id)})).json()
    assert (await pay(client, headers, o["id"], "wallet")).status_code == 201
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["result"]["receipt_number"].startswith("R2027-")
    html = await client.get(f"/api/v1/receipts/{got['result']['receipt_id']}.html",
                            headers=headers)
    assert "2027-01-01 00:30" in html.text
