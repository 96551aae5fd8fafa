"""Settle payment attempts whose webhook never came: ask the provider directly."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import select

from openmvno import clock
from openmvno.adapters.payments import ProviderPayment
from openmvno.db import unit_of_work
from openmvno.orders.models import Order
from openmvno.payments import service as payments
from openmvno.payments.models import AttemptState, PaymentAttempt
from openmvno.runtime import Runtime

log = logging.getLogger("openmvno.payments.janitor")


async def settle_stuck(rt: Runtime, *, older_than: timedelta) -> int:
    """Attempts still ``created``/``requires_action`` after ``older_than`` are looked up with
    ``provider.retrieve``: a success is applied exactly as its webhook would be, a failure
    fails the attempt, and one still unanswered past ``payment_hard_limit_hours`` fails with
    code ``expired``. One transaction per attempt; returns how many attempts were settled."""
    now = clock.now()
    hard_limit = now - timedelta(hours=rt.settings.payment_hard_limit_hours)
    async with unit_of_work(rt.sessions) as session:
        rows = (
            await session.execute(
                select(PaymentAttempt.id, PaymentAttempt.provider, PaymentAttempt.provider_ref,
                       PaymentAttempt.created_at)
                .where(PaymentAttempt.state.in_(payments.OPEN),
                       PaymentAttempt.created_at < now - older_than,
                       PaymentAttempt.provider != payments.WALLET,
                       # saved-card charges are settled by payments.cards.charge_cards
                       PaymentAttempt.order_id.is_not(None))
                .order_by(PaymentAttempt.created_at)
            )
        ).all()
    settled = 0
    for attempt_id, provider_name, reference, created_at in rows:
        answer: ProviderPayment | None = None
        if reference:
            try:
                answer = await payments.provider_for(rt, provider_name).retrieve(reference)
            except Exception:  # noqa: BLE001 - the provider is down; try again next round
                log.warning("retrieve failed", extra={"attempt": str(attempt_id)})
        too_old = created_at < hard_limit
        if await _settle(rt, attempt_id, provider_name, answer, too_old=too_old):
            settled += 1
    return settled


async def _settle(
    rt: Runtime, attempt_id: uuid.UUID, provider_name: str, answer: ProviderPayment | None,
    *, too_old: bool,
) -> bool:
    async with unit_of_work(rt.sessions) as session:
        if answer is not None and answer.status in ("succeeded", "failed"):
            outcome = await payments.apply(
                session, rt, provider_name=provider_name, payment=answer
            )
            log.info("janitor settled", extra={"attempt": str(attempt_id), "outcome": outcome})
            return not outcome.startswith("ignored")
        if not too_old:
            return False
        attempt = await session.get(PaymentAttempt, attempt_id, populate_existing=True)
        if attempt is None or attempt.state not in payments.OPEN:
            return False
        order = await session.get(Order, attempt.order_id)
        assert order is not None
        await payments.fail_attempt(session, attempt, order, "expired")
        return attempt.state == AttemptState.failed
