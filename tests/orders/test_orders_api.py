"""Orders over HTTP: idempotent creation, what each kind does once paid, cancel, history."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from openmvno.db import unit_of_work
from openmvno.ledger.models import BalanceEntry, Bucket, BucketKind
from openmvno.lines.models import Line, LineState
from openmvno.notifications.models import OutboxKind, OutboxMessage
from openmvno.orders.models import Order
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.orders.helpers import (
    GB,
    fund_wallet,
    give_line,
    order,
    paid_plan_order,
    pay,
    seed_esims,
    seed_plans,
    subscriber,
    wallet_minor,
)


async def test_same_key_same_body_is_the_same_order_other_body_is_409(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    headers, _ = await subscriber(client)
    body = {"kind": "topup", "amount_minor": 5000}
    first = await order(client, headers, body, key="k-1")
    assert first.status_code == 201, first.text
    again = await order(client, headers, body, key="k-1")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other = await order(client, headers, {"kind": "topup", "amount_minor": 6000}, key="k-1")
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    missing = await client.post("/api/v1/orders", json=body, headers=headers)
    assert missing.status_code == 422
    assert missing.json()["code"] == "idempotency_key_required"


async def test_fifty_parallel_posts_with_one_key_make_one_order_and_one_charge(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    await fund_wallet(rt, me, 20000)
    body = {"kind": "plan", "plan_code": "M30", "line_id": str(line.id)}
    answers = await asyncio.gather(*[order(client, headers, body, key="dbl") for _ in range(50)])
    assert sorted({r.status_code for r in answers}) == [200, 201]
    assert [r.status_code for r in answers].count(201) == 1
    assert len({r.json()["id"] for r in answers}) == 1
    order_id = answers[0].json()["id"]
    payments = await asyncio.gather(*[pay(client, headers, order_id, "wallet") for _ in range(50)])
    assert [p.status_code for p in payments].count(201) == 1
    assert {p.status_code for p in payments} <= {201, 409}
    assert await wallet_minor(rt, me) == 20000 - 5000
    async with unit_of_work(rt.sessions) as s:
        assert await s.scalar(select(func.count()).select_from(Order)) == 1
        debits = await s.scalar(select(func.count()).select_from(BalanceEntry)
                                .where(BalanceEntry.delta < 0))
        assert debits == 1


async def test_topup_limits_come_from_settings(client: httpx.AsyncClient, rt: Runtime) -> None:
    headers, _ = await subscriber(client)
    low = await order(client, headers, {"kind": "topup", "amount_minor": 999})
    high = await order(client, headers, {"kind": "topup", "amount_minor": 100001})
    assert low.status_code == high.status_code == 422
    assert low.json()["code"] == "topup_amount_out_of_range"
    zh = await client.post("/api/v1/orders", json={"kind": "topup", "amount_minor": 1},
                           headers={**headers, "Idempotency-Key": "z", "Accept-Language": "zh-CN"})
    assert "充值金额须在" in zh.json()["detail"]


async def test_new_esim_line_comes_with_activation_code_at_once(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    await seed_esims(rt, 1)
    headers, me = await subscriber(client)
    await fund_wallet(rt, me, 10000)
    created = await order(client, headers, {"kind": "new_line", "plan_code": "M30"})
    assert created.status_code == 201, created.text
    paid = await pay(client, headers, created.json()["id"], "wallet")
    assert paid.status_code == 201, paid.text
    got = (await client.get(f"/api/v1/orders/{created.json()['id']}", headers=headers)).json()
    assert got["state"] == "fulfilled"
    assert got["result"]["activation_code"].startswith("LPA:1$")
    assert got["result"]["qr_png_url"].endswith("/esim.png")
    assert got["provisioning"] == "pending"
    assert got["result"]["expires_at"] == (frozen.now + timedelta(days=30)).isoformat()
    qr = await client.get(got["result"]["qr_png_url"], headers=headers)
    assert qr.status_code == 200
    assert qr.headers["content-type"] == "image/png"
    async with unit_of_work(rt.sessions) as s:
        line = await s.get(Line, uuid.UUID(got["line_id"]))
        assert line is not None
        assert line.account_id == me
        assert line.state == LineState.active


async def test_two_buyers_racing_for_the_last_esim_never_share_it(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await seed_plans(rt)
    await seed_esims(rt, 1)
    buyers = [await subscriber(client) for _ in range(2)]
    orders = []
    for headers, me in buyers:
        await fund_wallet(rt, me, 10000)
        orders.append((await order(client, headers, {"kind": "new_line", "plan_code": "D7"})).json())
    await asyncio.gather(*[pay(client, h, o["id"], "wallet") for (h, _), o in zip(buyers, orders, strict=True)])
    states = []
    for (headers, me), o in zip(buyers, orders, strict=True):
        got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
        states.append(got["state"])
        if got["state"] == "failed":
            assert got["failure_code"] == "out_of_stock"
            assert await wallet_minor(rt, me) == 10000  # refunded to the wallet at once
    assert sorted(states) == ["failed", "fulfilled"]
    async with unit_of_work(rt.sessions) as s:
        owned = await s.scalar(select(func.count()).select_from(Line)
                               .where(Line.account_id.is_not(None)))
        assert owned == 1
    sold_out = await order(client, buyers[0][0], {"kind": "new_line", "plan_code": "D7"})
    assert sold_out.status_code == 409
    assert sold_out.json()["code"] == "out_of_stock"


async def test_renewal_stacks_on_current_expiry_and_after_expiry_starts_now(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    await fund_wallet(rt, me, 50000)
    early = await give_line(rt, me, expires_at=frozen.now + timedelta(days=5))
    lapsed = await give_line(rt, me, state=LineState.grace,
                             expires_at=frozen.now - timedelta(days=2))
    cut = await give_line(rt, me, state=LineState.suspended,
                          expires_at=frozen.now - timedelta(days=20))
    expect = {
        early.id: frozen.now + timedelta(days=35),
        lapsed.id: frozen.now + timedelta(days=30),
        cut.id: frozen.now + timedelta(days=30),
    }
    for line_id, new_expiry in expect.items():
        o = (await order(client, headers, {"kind": "plan", "plan_code": "M30",
                                           "line_id": str(line_id)})).json()
        assert (await pay(client, headers, o["id"], "wallet")).status_code == 201
        got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
        assert got["result"]["expires_at"] == new_expiry.isoformat()
        assert {g["kind"] for g in got["result"]["granted"]} == {"data", "voice", "sms"}
    async with unit_of_work(rt.sessions) as s:
        for line_id, new_expiry in expect.items():
            line = await s.get(Line, line_id)
            assert line is not None
            assert line.state == LineState.active
            assert line.expires_at == new_expiry
            assert line.plan_id is not None
        stacked = await s.scalar(select(Bucket).where(Bucket.line_id == early.id,
                                                      Bucket.kind == BucketKind.data))
        assert stacked is not None
        assert stacked.valid_from == frozen.now + timedelta(days=5)
        assert stacked.remaining == 10 * GB


async def test_addon_never_moves_expiry_and_ends_with_the_line(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    await fund_wallet(rt, me, 5000)
    expiry = frozen.now + timedelta(days=10)
    line = await give_line(rt, me, expires_at=expiry)
    o = (await order(client, headers, {"kind": "addon", "plan_code": "ADD1G",
                                       "line_id": str(line.id)})).json()
    assert (await pay(client, headers, o["id"], "wallet")).status_code == 201
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["result"]["expires_at"] == expiry.isoformat()
    assert got["result"]["granted"] == [{
        "kind": "data", "amount": GB, "valid_from": frozen.now.isoformat(),
        "valid_until": expiry.isoformat(),
    }]
    lapsed = await give_line(rt, me, state=LineState.grace,
                             expires_at=frozen.now - timedelta(days=1))
    r = await order(client, headers, {"kind": "addon", "plan_code": "ADD1G",
                                      "line_id": str(lapsed.id)})
    assert r.status_code == 409
    assert r.json()["code"] == "line_not_active"


async def test_wrong_plan_kind_terminated_line_and_missing_fields_are_refused(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    dead = await give_line(rt, me, state=LineState.terminated)
    addon_as_plan = await order(client, headers, {"kind": "plan", "plan_code": "ADD1G",
                                                  "line_id": str(line.id)})
    assert addon_as_plan.json()["code"] == "plan_kind_mismatch"
    terminated = await order(client, headers, {"kind": "plan", "plan_code": "M30",
                                               "line_id": str(dead.id)})
    assert terminated.json()["code"] == "line_terminated"
    missing = await order(client, headers, {"kind": "plan", "plan_code": "M30"})
    assert missing.status_code == 422
    assert missing.json()["code"] == "field_required"
    not_mine_headers, _ = await subscriber(client)
    stranger = await order(client, not_mine_headers, {"kind": "plan", "plan_code": "M30",
                                                      "line_id": str(line.id)})
    assert stranger.status_code == 404
    guest_plan = await order(client, None, {"kind": "topup", "amount_minor": 5000})
    assert guest_plan.status_code == 401


async def test_cancel_until_paid_then_409_with_a_reason(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    await fund_wallet(rt, me, 10000)
    body = {"kind": "plan", "plan_code": "D7", "line_id": str(line.id)}
    first = (await order(client, headers, body)).json()
    cancelled = await client.post(f"/api/v1/orders/{first['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["cancelled_at"]
    unpayable = await pay(client, headers, first["id"], "wallet")
    assert unpayable.status_code == 409
    second = (await order(client, headers, body)).json()
    assert (await pay(client, headers, second["id"], "wallet")).status_code == 201
    late = await client.post(f"/api/v1/orders/{second['id']}/cancel",
                             headers={**headers, "Accept-Language": "zh-CN"})
    assert late.status_code == 409
    assert late.json()["code"] == "order_not_cancellable"
    assert late.json()["detail"] == "该订单已支付并办理完成，无法取消。"


async def test_history_is_mine_newest_first_and_paginated(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    headers, _ = await subscriber(client)
    ids = []
    for amount in (1000, 2000, 3000):
        ids.append((await order(client, headers, {"kind": "topup", "amount_minor": amount}))
                   .json()["id"])
        frozen.advance(minutes=1)
    page = (await client.get("/api/v1/orders?limit=2", headers=headers)).json()
    assert page["total"] == 3
    assert [o["id"] for o in page["items"]] == [ids[2], ids[1]]
    rest = (await client.get("/api/v1/orders?limit=2&offset=2", headers=headers)).json()
    assert [o["id"] for o in rest["items"]] == [ids[0]]
    other, _ = await subscriber(client)
    assert (await client.get("/api/v1/orders", headers=other)).json()["total"] == 0
    assert (await client.get(f"/api/v1/orders/{ids[0]}", headers=other)).status_code == 404
    assert (await client.post(f"/api/v1/orders/{ids[0]}/cancel",
                              headers=other)).status_code == 404


async def test_success_notice_and_provisioning_job_go_out(
    client: httpx.AsyncClient, rt: Runtime, deliver: object
) -> None:
    headers, o = await paid_plan_order(client, rt, "M30", email="li@example.com")
    async with unit_of_work(rt.sessions) as s:
        sms = await s.scalar(select(OutboxMessage).where(
            OutboxMessage.dedupe_key == f"order-done-sms:{o['id']}"))
        assert sms is not None
        assert sms.recipient == headers["X-Phone"]
        assert "Enjoy 30 days" in sms.body
        email = await s.scalar(select(OutboxMessage).where(
            OutboxMessage.kind == OutboxKind.email,
            OutboxMessage.dedupe_key == f"order-done-email:{o['id']}"))
        assert email is not None
    before = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert before["provisioning"] == "pending" and before["result"]
    await deliver()  # type: ignore[operator]
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["provisioning"] == "done"
    assert got["result"]["provisioning_ref"].startswith("sbx-prov-")
    # The outcome is added to what fulfilment recorded, which stays as it was.
    assert got["result"] == {**before["result"], "provisioning_ref": got["result"]["provisioning_ref"]}


async def test_failed_provisioning_is_visible_on_the_order(
    client: httpx.AsyncClient, rt: Runtime, deliver: object
) -> None:

    rt.settings.provisioning_sandbox_fail = True
    await seed_plans(rt)
    headers, me = await subscriber(client)
    line = await give_line(rt, me)
    await fund_wallet(rt, me, 10000)
    o = (await order(client, headers, {"kind": "plan", "plan_code": "D7",
                                       "line_id": str(line.id)})).json()
    await pay(client, headers, o["id"], "wallet")
    await deliver()  # type: ignore[operator]
    got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
    assert got["state"] == "fulfilled"
    assert got["provisioning"] == "failed"
    assert "refused" in got["result"]["provisioning_error"]
