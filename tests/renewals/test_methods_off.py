"""Payment methods an admin switches off on the console hold for the off-session payers
too: with cards off no saved card is charged (auto-renew falls back to the wallet when the
subscriber allowed it, else fails with a clear reason and retries on schedule; auto top-up
waits, and the API and the portal say so), with the wallet off no renewal debits the wallet;
the API and the portal say so."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from openmvno.accounts.models import Role
from openmvno.adapters.payments.sandbox_models import SandboxCharge
from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.lines.models import Line, LineState
from openmvno.notifications.models import Notice, OutboxMessage
from openmvno.payments import auto_topup
from openmvno.payments.models import PaymentAttempt
from openmvno.renewals import scheduler
from openmvno.renewals.models import AutoRenewSetting, Funding
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock, app_for
from tests.console.helpers import staff_client
from tests.orders.helpers import fund_wallet, give_line, seed_plans, subscriber, wallet_minor
from tests.payments.card_helpers import DECLINES_LATER, SAVES, new_account, save_card


async def _auto_line(rt: Runtime, account_id: uuid.UUID, frozen: FrozenClock, *,
                     funding: Funding, card: uuid.UUID | None = None,
                     fallback: bool = True) -> uuid.UUID:
    from openmvno.renewals import service

    line = await give_line(rt, account_id, expires_at=frozen.now + timedelta(days=30))
    async with unit_of_work(rt.sessions) as s:
        plan = await s.scalar(select(Plan).where(Plan.code == "M30"))
        found = await s.get(Line, line.id)
        assert plan is not None and found is not None
        found.plan_id = plan.id
        await s.flush()
        await service.set_auto_renew(s, account_id=account_id, line_id=line.id, enabled=True,
                                     funding=funding.value, card_id=card,
                                     wallet_fallback=fallback, settings=rt.settings)
    return line.id


async def _card(rt: Runtime, client: Any, me: uuid.UUID, number: str) -> uuid.UUID:
    setup = await save_card(rt, client, me, number)
    assert setup.card_id is not None
    return setup.card_id


async def _switch(admin: httpx.AsyncClient, csrf: str, method: str, state: str) -> None:
    r = await admin.post("/console/admin/payment-methods",
                         data={"csrf": csrf, "method": method, "state": state, "reason": "test"})
    assert r.status_code == 303 and r.headers["location"].endswith("done=saved"), r.headers


async def _fresh(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    """New API headers after the clock moved past the access token's life."""
    r = await client.post("/api/v1/auth/token", json={"login": headers["X-Phone"],
                                                      "password": "Harbour-Lights-2026"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def _setting(rt: Runtime, line_id: uuid.UUID) -> tuple[Line, AutoRenewSetting]:
    async with unit_of_work(rt.sessions, readonly=True) as s:
        line = await s.get(Line, line_id)
        setting = await s.scalar(select(AutoRenewSetting)
                                 .where(AutoRenewSetting.line_id == line_id))
        assert line is not None and setting is not None
        return line, setting


async def _count(rt: Runtime, model: Any, *where: Any) -> int:
    async with unit_of_work(rt.sessions, readonly=True) as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _failed_bodies(rt: Runtime, account_id: uuid.UUID) -> list[str]:
    """The ``renewal_failed`` messages the subscriber was sent."""
    async with unit_of_work(rt.sessions, readonly=True) as s:
        failed = [f"notice-sms:{i}" for i in await s.scalars(select(Notice.id).where(
            Notice.account_id == account_id, Notice.event == "renewal_failed"))]
        return list(await s.scalars(select(OutboxMessage.body).where(
            OutboxMessage.dedupe_key.in_(failed))))


async def test_cards_off_no_card_is_charged_wallet_fallback_or_a_failure_retried(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    await fund_wallet(rt, me, 5000)
    card = await _card(rt, client, me, SAVES)
    falls_back = await _auto_line(rt, me, frozen, funding=Funding.card, card=card)
    card_only = await _auto_line(rt, me, frozen, funding=Funding.card, card=card,
                                 fallback=False)
    expiry = frozen.now + timedelta(days=30)
    admin, csrf = await staff_client(app_for(rt), rt, Role.admin)
    await _switch(admin, csrf, "card", "off")

    # The API says the funding source is switched off (and what happens instead).
    shown = (await client.get(f"/api/v1/lines/{falls_back}/auto-renew", headers=headers)).json()
    assert shown["funding"] == "card" and shown["funding_switched_off"] is True
    assert shown["switched_off"] == ["card"]
    shown = (await client.get(f"/api/v1/lines/{card_only}/auto-renew", headers=headers)).json()
    assert shown["funding_switched_off"] is True
    # ... and so does the agent's screen of the caller (both lines paused)
    screen = await admin.get(f"/console/accounts/{me}?lang=en")
    assert screen.text.count('data-test="auto-renew-paused"') == 2
    assert "switched off for now: " in screen.text
    assert "暂时关闭" in (await admin.get(f"/console/accounts/{me}?lang=zh-CN")).text

    frozen.now = expiry - timedelta(hours=24)
    assert await scheduler.run_due(rt) == 2
    assert await _count(rt, SandboxCharge) == 0  # no saved card was charged off-session
    assert await _count(rt, PaymentAttempt, PaymentAttempt.method == "card") == 0
    line, setting = await _setting(rt, falls_back)
    assert line.expires_at == expiry + timedelta(days=30)  # renewed from the wallet
    assert await wallet_minor(rt, me) == 0
    line, setting = await _setting(rt, card_only)
    assert line.expires_at == expiry
    assert setting.last_failure == scheduler.CARD_OFF and setting.attempts == 1
    assert setting.next_attempt_at == expiry - timedelta(hours=12)  # the usual retry
    bodies = await _failed_bodies(rt, me)
    assert len(bodies) == 1 and "payment by card is switched off for now" in bodies[0], bodies

    frozen.now = expiry - timedelta(hours=12)  # the retry, cards still off: no charge
    assert await scheduler.run_due(rt) == 1
    assert await _count(rt, SandboxCharge) == 0
    _, setting = await _setting(rt, card_only)
    assert setting.attempts == 2 and setting.last_failure == scheduler.CARD_OFF
    assert len(await _failed_bodies(rt, me)) == 1  # one notice per stage

    await admin.aclose()
    admin, csrf = await staff_client(app_for(rt), rt, Role.admin)  # time moved
    await _switch(admin, csrf, "card", "on")
    headers = await _fresh(client, headers)
    shown = (await client.get(f"/api/v1/lines/{card_only}/auto-renew", headers=headers)).json()
    assert shown["funding_switched_off"] is False and shown["switched_off"] == []
    frozen.now = setting.next_attempt_at
    assert await scheduler.run_due(rt) == 1
    assert await _count(rt, SandboxCharge, SandboxCharge.status == "succeeded") == 1
    line, setting = await _setting(rt, card_only)
    assert line.expires_at == expiry + timedelta(days=30)
    assert setting.last_failure == "" and setting.attempts == 0
    async with unit_of_work(rt.sessions) as s:
        assert await ledger.check(s) == []
    await admin.aclose()


async def test_wallet_off_no_renewal_debits_the_wallet(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    await seed_plans(rt)
    headers, me = await subscriber(client)
    await fund_wallet(rt, me, 20000)
    declining = await _card(rt, client, me, DECLINES_LATER)
    by_wallet = await _auto_line(rt, me, frozen, funding=Funding.wallet)
    by_card = await _auto_line(rt, me, frozen, funding=Funding.card, card=declining)
    lapsed = await _auto_line(rt, me, frozen, funding=Funding.wallet)
    expiry = frozen.now + timedelta(days=30)
    admin, csrf = await staff_client(app_for(rt), rt, Role.admin)
    await _switch(admin, csrf, "wallet", "off")

    shown = (await client.get(f"/api/v1/lines/{by_wallet}/auto-renew", headers=headers)).json()
    assert shown["funding_switched_off"] is True and shown["switched_off"] == ["wallet"]
    shown = (await client.get(f"/api/v1/lines/{by_card}/auto-renew", headers=headers)).json()
    assert shown["funding_switched_off"] is False and shown["switched_off"] == ["wallet"]

    # A lapsed wallet line waiting for a top-up is not taken while the wallet is off.
    async with unit_of_work(rt.sessions) as s:
        row = await s.get(Line, lapsed)
        assert row is not None
        row.state = LineState.suspended
        setting = await s.scalar(select(AutoRenewSetting)
                                 .where(AutoRenewSetting.line_id == lapsed))
        assert setting is not None
        setting.waiting_for_wallet = True
        setting.next_attempt_at = expiry + timedelta(days=60)

    frozen.now = expiry - timedelta(hours=24)
    assert await scheduler.run_due(rt) == 2
    assert await wallet_minor(rt, me) == 20000  # nothing debited
    _, setting = await _setting(rt, by_wallet)
    assert setting.last_failure == scheduler.WALLET_OFF and setting.attempts == 1
    line, setting = await _setting(rt, by_card)
    assert line.expires_at == expiry
    assert setting.last_failure == "card_declined"  # charged, declined, no wallet fallback
    assert await _count(rt, SandboxCharge) == 1
    line, setting = await _setting(rt, lapsed)
    assert line.state == LineState.suspended and setting.waiting_for_wallet is True
    bodies = await _failed_bodies(rt, me)
    assert any("payment from the wallet is switched off for now" in b for b in bodies), bodies

    await admin.aclose()
    admin, csrf = await staff_client(app_for(rt), rt, Role.admin)  # time moved
    await _switch(admin, csrf, "wallet", "on")
    assert await scheduler.run_due(rt) == 1  # the suspended line, its wallet covers the price
    line, _ = await _setting(rt, lapsed)
    assert line.state == LineState.active
    assert await wallet_minor(rt, me) == 15000
    await admin.aclose()


async def test_the_portal_says_the_funding_is_switched_off(
    client: httpx.AsyncClient, rt: Runtime, frozen: FrozenClock
) -> None:
    from tests.console.helpers import csrf_of

    await seed_plans(rt)
    headers, me = await subscriber(client)
    line_id = await _auto_line(rt, me, frozen, funding=Funding.wallet)
    admin, csrf = await staff_client(app_for(rt), rt, Role.admin)
    page = await client.get("/login")
    r = await client.post("/login", data={"csrf": csrf_of(page.text), "login": headers["X-Phone"],
                                          "password": "Harbour-Lights-2026"})
    assert r.status_code == 303, r.text
    shown = await client.get(f"/lines/{line_id}/auto-renew?lang=en")
    assert 'data-test="auto-renew-switched-off"' not in shown.text
    await _switch(admin, csrf, "wallet", "off")
    shown = await client.get(f"/lines/{line_id}/auto-renew?lang=en")
    assert ("Payment from the wallet is switched off for now: this line is not renewed "
            "automatically until it is back.") in shown.text
    shown = await client.get(f"/lines/{line_id}/auto-renew?lang=zh-CN")
    assert "余额支付暂时关闭" in shown.text
    await admin.aclose()


async def test_auto_topup_waits_while_cards_are_off(
    rt: Runtime, client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    account = await new_account(rt)
    await save_card(rt, client, account, SAVES)
    async with unit_of_work(rt.sessions) as s:
        await auto_topup.set_auto_topup(
            s, account_id=account, currency="CNY", enabled=True, threshold_minor=2000,
            amount_minor=5000, max_per_month=2,
        )
    admin, csrf = await staff_client(app_for(rt), rt, Role.admin)
    await _switch(admin, csrf, "card", "off")
    assert await auto_topup.run_due(rt) == 0  # due (an empty wallet), but cards are off
    assert await _count(rt, SandboxCharge) == 0
    assert await _count(rt, auto_topup.AutoTopupRun) == 0
    await _switch(admin, csrf, "card", "on")
    assert await auto_topup.run_due(rt) == 1
    assert await _count(rt, SandboxCharge) == 1
    async with unit_of_work(rt.sessions) as s:
        assert (await ledger.wallet(s, account_id=account, currency="CNY")).remaining == 5000
    async with unit_of_work(rt.sessions, readonly=True) as s:
        assert await s.scalar(select(func.count()).select_from(Notice).where(
            Notice.event == "auto_topup_done")) == 1
    await admin.aclose()


async def test_the_api_and_the_portal_say_auto_topup_waits_while_cards_are_off(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    from tests.console.helpers import csrf_of

    headers, me = await subscriber(client)
    await save_card(rt, client, me, SAVES)
    body = {"enabled": True, "threshold_minor": 2000, "amount_minor": 5000}
    shown = (await client.put("/api/v1/wallet/auto-topup", json=body, headers=headers)).json()
    assert (shown["enabled"], shown["card_switched_off"]) == (True, False)
    page = await client.get("/login")
    r = await client.post("/login", data={"csrf": csrf_of(page.text), "login": headers["X-Phone"],
                                          "password": "Harbour-Lights-2026"})
    assert r.status_code == 303, r.text
    assert 'data-test="topup-switched-off"' not in (await client.get("/account/cards")).text

    admin, csrf = await staff_client(app_for(rt), rt, Role.admin)
    await _switch(admin, csrf, "card", "off")
    shown = (await client.get("/api/v1/wallet/auto-topup", headers=headers)).json()
    assert (shown["enabled"], shown["card_switched_off"]) == (True, True)
    english = (await client.get("/account/cards?lang=en")).text
    assert ("Payment by card is switched off for now: your wallet is not topped up "
            "automatically until it is back.") in english
    assert "恢复前余额不会自动充值" in (await client.get("/account/cards?lang=zh-CN")).text
    # Off, there is nothing to wait for: no word of it.
    off = dict(body, enabled=False)
    shown = (await client.put("/api/v1/wallet/auto-topup", json=off, headers=headers)).json()
    assert shown["card_switched_off"] is True
    assert 'data-test="topup-switched-off"' not in (await client.get("/account/cards")).text
    await _switch(admin, csrf, "card", "on")
    shown = (await client.get("/api/v1/wallet/auto-topup", headers=headers)).json()
    assert shown["card_switched_off"] is False
    await admin.aclose()
