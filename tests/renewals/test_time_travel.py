"""Four months of two lines with the injected clock and the real worker (every job:
renewals, lifecycle, reminders, outbox, sandbox webhooks).

Alice's line renews itself twice (from the wallet, then from a card that is declined and
falls back to the wallet), lapses into grace and suspension when neither can pay, and
comes back the moment she tops up her wallet. Bob has auto-renew off: his line goes
through grace and suspension to termination. States, balances, ledger entries and every
message sent (text, channel, count) are asserted."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select

from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BalanceEntry, Bucket, BucketKind, EntryReason
from openmvno.lines.models import Line, LineState
from openmvno.notifications.models import OutboxKind, OutboxMessage
from openmvno.renewals.runs import RenewalRun
from openmvno.runtime import Runtime
from openmvno.worker.runner import drain
from tests.adapters.payments.sandbox_helpers import pay_by_card
from tests.conftest import FrozenClock
from tests.orders.helpers import GB, fund_wallet, give_line, order, pay, seed_plans, subscriber
from tests.payments.card_helpers import DECLINES_LATER, save_card

STEP = timedelta(days=1)


class World:
    def __init__(self, rt: Runtime, client: httpx.AsyncClient, frozen: FrozenClock) -> None:
        self.rt, self.client, self.frozen = rt, client, frozen

    async def until(self, when: datetime) -> None:
        """Live up to ``when``: the worker runs once a day of the way, and at ``when``."""
        while self.frozen.now < when:
            self.frozen.now = min(self.frozen.now + STEP, when)
            await drain(self.rt, max_rounds=None)

    async def login(self, headers: dict[str, str]) -> dict[str, str]:
        """A fresh access token (they last 15 minutes; the months go by faster)."""
        r = await self.client.post("/api/v1/auth/token", json={
            "login": headers["X-Phone"], "password": "Harbour-Lights-2026"})
        assert r.status_code == 200, r.text
        return {**headers, "Authorization": f"Bearer {r.json()['access_token']}"}

    async def line(self, line_id: uuid.UUID) -> Line:
        async with unit_of_work(self.rt.sessions) as s:
            found = await s.get(Line, line_id)
            assert found is not None
            return found

    async def wallet(self, account_id: uuid.UUID) -> int:
        async with unit_of_work(self.rt.sessions) as s:
            return await ledger.wallet_balance(s, account_id=account_id, currency="CNY")

    async def messages(self, phone: str) -> list[tuple[str, str]]:
        """(channel, text) of every notice sent to ``phone``, oldest first (those queued in
        the same instant by their text)."""
        async with unit_of_work(self.rt.sessions) as s:
            rows = await s.execute(
                select(OutboxMessage.kind, OutboxMessage.body)
                .where(OutboxMessage.recipient == phone,
                       OutboxMessage.dedupe_key.like("notice-%"))
                .order_by(OutboxMessage.created_at, OutboxMessage.body)
            )
            return [(OutboxKind(k).value, b) for k, b in rows.all()]


async def _plan_line(w: World, account_id: uuid.UUID, days: int) -> Line:
    async with unit_of_work(w.rt.sessions) as s:
        plan = await s.scalar(select(Plan).where(Plan.code == "M30"))
        assert plan is not None
        plan_id = plan.id
    line = await give_line(w.rt, account_id, expires_at=w.frozen.now + timedelta(days=days))
    async with unit_of_work(w.rt.sessions) as s:
        found = await s.get(Line, line.id)
        assert found is not None
        found.plan_id = plan_id
    return line


async def test_four_months_of_two_lines(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    rt.extras["http_transport"] = client._transport  # sandbox webhooks come back here
    w = World(rt, client, frozen)
    await seed_plans(rt)  # M30: 30 days, CN¥50.00
    alice_h, alice = await subscriber(client, name="Alice")
    bob_h, bob = await subscriber(client, name="Bob")
    t0 = frozen.now  # 2026-11-25 12:00 UTC
    a = await _plan_line(w, alice, 30)  # expires 2026-12-25 12:00 UTC
    b = await _plan_line(w, bob, 15)  # expires 2026-12-10 12:00 UTC
    await fund_wallet(rt, alice, 10000)
    r = await client.put(f"/api/v1/lines/{a.id}/auto-renew", json={"enabled": True},
                         headers=alice_h)
    assert r.status_code == 200, r.text
    e1 = t0 + timedelta(days=30)

    # Month 1: renewed from the wallet at T-24h.
    await w.until(e1 - timedelta(hours=24))
    line = await w.line(a.id)
    assert line.state == LineState.active and line.expires_at == e1 + timedelta(days=30)
    assert await w.wallet(alice) == 5000

    # Bob's line lapses: grace on 12-10, suspended on 12-17.
    await w.until(t0 + timedelta(days=22))
    assert (await w.line(b.id)).state == LineState.suspended

    # Month 2: Alice pays with a card that is declined; it falls back to the wallet.
    card = await save_card(rt, client, alice, DECLINES_LATER)
    alice_h = await w.login(alice_h)
    r = await client.put(f"/api/v1/lines/{a.id}/auto-renew",
                         json={"enabled": True, "card_id": str(card.card_id),
                               "wallet_fallback": True}, headers=alice_h)
    assert r.status_code == 200 and r.json()["funding"] == "card", r.text
    e2 = e1 + timedelta(days=30)
    await w.until(e2 - timedelta(hours=24))
    line = await w.line(a.id)
    assert line.state == LineState.active and line.expires_at == e2 + timedelta(days=30)
    assert await w.wallet(alice) == 0

    # Bob's line is terminated 37 days after its expiry (7 of grace, 30 suspended).
    await w.until(t0 + timedelta(days=15 + 37))
    assert (await w.line(b.id)).state == LineState.terminated

    # Month 3: neither the card nor the wallet can pay: retries, grace, suspension.
    e3 = e2 + timedelta(days=30)
    for hours in (-24, -12, -1):  # the attempts before expiry
        await w.until(e3 + timedelta(hours=hours))
        assert (await w.line(a.id)).state == LineState.active
    for hours in (0, 6, 18, 42, 66, 90):  # grace, and its retries with backoff
        await w.until(e3 + timedelta(hours=hours))
        assert (await w.line(a.id)).state == LineState.grace
    await w.until(e3 + timedelta(days=8))
    line = await w.line(a.id)
    assert line.state == LineState.suspended and line.expires_at == e3

    # A top-up (a real order paid by card on the sandbox) restores the line at once.
    alice_h = await w.login(alice_h)
    o = (await order(client, alice_h, {"kind": "topup", "amount_minor": 5000})).json()
    started = await pay(client, alice_h, o["id"], "card")
    assert started.status_code == 201, started.text
    paid = await pay_by_card(client, started.json()["next_action"]["url"], "4242424242424242")
    assert paid.status_code == 303
    await drain(rt, max_rounds=None)  # the webhook credits the wallet; the renewal follows
    line = await w.line(a.id)
    assert line.state == LineState.active
    assert line.expires_at == frozen.now + timedelta(days=30)
    assert await w.wallet(alice) == 0

    # Month 4 goes by; the line is renewed no further (the wallet is empty, the card
    # declines) until its next expiry.
    restored_until = line.expires_at
    assert restored_until is not None
    await w.until(t0 + timedelta(days=120))
    assert frozen.now < restored_until - timedelta(hours=24)
    assert (await w.line(a.id)).state == LineState.active

    async with unit_of_work(rt.sessions) as s:
        runs = list(await s.scalars(select(RenewalRun).where(RenewalRun.line_id == a.id)
                                    .order_by(RenewalRun.created_at)))
        entries = list(await s.execute(
            select(BalanceEntry.reason, BalanceEntry.delta)
            .join(Bucket, Bucket.id == BalanceEntry.bucket_id)
            .where(Bucket.account_id == alice, Bucket.kind == BucketKind.money)
            .order_by(BalanceEntry.id)))
        expired = list(await s.execute(
            select(Bucket.kind, BalanceEntry.delta)
            .join(Bucket, Bucket.id == BalanceEntry.bucket_id)
            .where(BalanceEntry.account_id == alice, BalanceEntry.reason == EntryReason.expire)
            .order_by(BalanceEntry.id)))
        drift = await ledger.check(s)
    assert [r.funding.value for r in runs] == ["wallet", "wallet", "wallet"]
    assert [(str(reason), delta) for reason, delta in entries] == [
        ("adjust", 10000), ("payment", -5000), ("payment", -5000), ("topup", 5000),
        ("payment", -5000)]
    # The unused allowances of each lapsed period expire through the ledger (reason expire):
    # renewal 1's at the end of month 2 (their validity), renewal 2's at the lapse.
    allowance = [(BucketKind.sms, -100), (BucketKind.voice, -6000), (BucketKind.data, -10 * GB)]
    assert [(BucketKind(k), d) for k, d in expired] == allowance * 2
    assert drift == []

    # Every message, in order, by SMS (neither has an email address), in the operator's
    # time zone (Asia/Shanghai, UTC+8). The one-day reminder of a renewed period is not
    # sent: the renewal at T-24h came first.
    alice_msgs = await w.messages(alice_h["X-Phone"])
    assert alice_msgs == [("sms", text.format(msisdn=a.msisdn)) for text in ALICE], alice_msgs
    bob_msgs = await w.messages(bob_h["X-Phone"])
    assert bob_msgs == [("sms", text.format(msisdn=b.msisdn)) for text in BOB], bob_msgs


OP = "OpenMVNO Demo Mobile"
ON = "Auto-renew is on: we renew it for you."
ALICE = [
    f"{OP}: Enjoy 30 days on {{msisdn}} ends on 2026-12-25 20:00 (in 7 days). "
    f"Renewing costs CN¥50.00. {ON}",
    f"{OP}: Enjoy 30 days on {{msisdn}} ends on 2026-12-25 20:00 (in 3 days). "
    f"Renewing costs CN¥50.00. {ON}",
    f"{OP}: Enjoy 30 days on {{msisdn}} was renewed for CN¥50.00. "
    "It now runs until 2027-01-24 20:00.",
    f"{OP}: Enjoy 30 days on {{msisdn}} ends on 2027-01-24 20:00 (in 7 days). "
    f"Renewing costs CN¥50.00. {ON}",
    f"{OP}: Enjoy 30 days on {{msisdn}} ends on 2027-01-24 20:00 (in 3 days). "
    f"Renewing costs CN¥50.00. {ON}",
    # the card was declined, the wallet paid
    f"{OP}: Enjoy 30 days on {{msisdn}} was renewed for CN¥50.00. "
    "It now runs until 2027-02-23 20:00.",
    f"{OP}: Enjoy 30 days on {{msisdn}} ends on 2027-02-23 20:00 (in 7 days). "
    f"Renewing costs CN¥50.00. {ON}",
    f"{OP}: Enjoy 30 days on {{msisdn}} ends on 2027-02-23 20:00 (in 3 days). "
    f"Renewing costs CN¥50.00. {ON}",
    f"{OP}: Enjoy 30 days on {{msisdn}} ends on 2027-02-23 20:00 (in 1 day). "
    f"Renewing costs CN¥50.00. {ON}",
    # three attempts before expiry, one message
    f"{OP}: we could not renew Enjoy 30 days on {{msisdn}}: your card was declined. "
    "Pay CN¥50.00 before 2027-02-23 20:00 to keep your line.",
    f"{OP}: Enjoy 30 days on {{msisdn}} has expired. Your line stays on until "
    "2027-03-02 20:00; pay CN¥50.00 to renew it.",
    # the retries in grace, one message
    f"{OP}: we could not renew Enjoy 30 days on {{msisdn}}: your card was declined. "
    "Pay CN¥50.00 before 2027-03-02 20:00 to keep your line.",
    f"{OP}: {{msisdn}} is suspended because its plan was not renewed. "
    "Renew it to restore service at once.",
    # the top-up: restored and renewed at once
    f"{OP}: {{msisdn}} is working again. Enjoy 30 days runs until 2027-04-02 20:00.",
    f"{OP}: Enjoy 30 days on {{msisdn}} was renewed for CN¥50.00. "
    "It now runs until 2027-04-02 20:00.",
]
OFF = "Auto-renew is off: renew it yourself to keep the line."
BOB = [
    f"{OP}: Enjoy 30 days on {{msisdn}} ends on 2026-12-10 20:00 (in 7 days). "
    f"Renewing costs CN¥50.00. {OFF}",
    f"{OP}: Enjoy 30 days on {{msisdn}} ends on 2026-12-10 20:00 (in 3 days). "
    f"Renewing costs CN¥50.00. {OFF}",
    f"{OP}: Enjoy 30 days on {{msisdn}} ends on 2026-12-10 20:00 (in 1 day). "
    f"Renewing costs CN¥50.00. {OFF}",
    f"{OP}: Enjoy 30 days on {{msisdn}} has expired. Your line stays on until "
    "2026-12-17 20:00; pay CN¥50.00 to renew it.",
    f"{OP}: {{msisdn}} is suspended because its plan was not renewed. "
    "Renew it to restore service at once.",
    f"{OP}: {{msisdn}} was closed because its plan was not renewed. "
    "The money in your wallet stays yours.",
]
