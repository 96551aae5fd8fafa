"""GET /api/v1/lines/{id}/balance: what the owner sees, in their language."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import select

from openmvno.accounts.models import Account
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import EntryReason
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock, register_and_login
from tests.ledger.helpers import GB, MB, make_line, make_plan


async def _li_with_a_plan(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock, *, auto_renew: bool
) -> tuple[dict[str, str], uuid.UUID]:
    headers = await register_and_login(client)
    expiry = frozen.now + timedelta(days=30)
    async with unit_of_work(rt.sessions) as s:
        li = await s.scalar(select(Account).where(Account.phone == headers["X-Phone"]))
        assert li is not None
        plan = await make_plan(s, "M30", data_bytes=10 * GB, voice_seconds=100 * 60, sms_count=50)
        line = await make_line(s, li, plan=plan, expires_at=expiry, auto_renew=auto_renew)
        data, *_ = await ledger.grant_plan(
            s, account_id=li.id, line_id=line.id, plan=plan, order_id=None,
            valid_from=frozen.now, valid_until=expiry, key="buy",
        )
        await ledger.post(
            s, bucket_id=data.id, account_id=li.id, delta=-(1 * GB + 512 * MB),
            reason=EntryReason.usage, key="cdr-1",
        )
        await ledger.credit_wallet(
            s, account_id=li.id, currency="CNY", amount_minor=12345,
            reason=EntryReason.topup, key="topup-1",
        )
    return headers, line.id


async def test_owner_sees_every_bucket_plan_expiry_and_wallet(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    headers, line_id = await _li_with_a_plan(client, rt, frozen, auto_renew=True)
    r = await client.get(f"/api/v1/lines/{line_id}/balance?lang=en", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["plan"] == {"code": "M30", "name": "M30 plan"}
    assert body["expires_at"].startswith("2026-12-25T12:00")
    assert body["next_renewal_at"] == body["expires_at"]
    assert body["wallet"] == {"currency": "CNY", "balance_minor": 12345, "balance_text": "CN¥123.45"}
    kinds = [
        (b["kind"], b["unit"], b["remaining"], b["total"], b["remaining_text"], b["total_text"])
        for b in body["buckets"]
    ]
    assert kinds == [
        ("data", "bytes", 8 * GB + 512 * MB, 10 * GB, "8.5 GB", "10 GB"),
        ("voice", "seconds", 6000, 6000, "100 min", "100 min"),
        ("sms", "count", 50, 50, "50 SMS", "50 SMS"),
    ]
    # 12:00 UTC, shown in the operator's time zone (Asia/Shanghai by default)
    assert all(b["valid_until_text"] == "2026-12-25 20:00" and b["active"] for b in body["buckets"])

    r = await client.get(f"/api/v1/lines/{line_id}/balance?lang=zh-CN", headers=headers)
    body = r.json()
    assert body["plan"]["name"] == "M30 套餐"
    assert body["wallet"]["balance_text"] == "¥123.45"
    texts = [b["remaining_text"] for b in body["buckets"]]
    assert texts[0] == "8.5 GB"
    assert "分钟" in texts[1] and "条" in texts[2]


async def test_no_auto_renew_means_no_next_renewal(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    headers, line_id = await _li_with_a_plan(client, rt, frozen, auto_renew=False)
    r = await client.get(f"/api/v1/lines/{line_id}/balance", headers=headers)
    assert r.status_code == 200
    assert r.json()["next_renewal_at"] is None
    assert r.json()["expires_at"] is not None


async def test_only_the_owner_may_look(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    _, line_id = await _li_with_a_plan(client, rt, frozen, auto_renew=False)
    r = await client.get(f"/api/v1/lines/{line_id}/balance")
    assert r.status_code == 401
    someone_else = await register_and_login(client)
    r = await client.get(f"/api/v1/lines/{line_id}/balance?lang=en", headers=someone_else)
    assert r.status_code == 404
    assert r.json()["code"] == "line_not_found"
    r = await client.get(f"/api/v1/lines/{uuid.uuid4()}/balance", headers=someone_else)
    assert r.status_code == 404
