"""The saved-cards revision relaxes ``payment_attempts.order_id`` (saved-card charges
have no order yet). On SQLite that rebuilds the table: refunds that point at existing
attempts must survive the way down and up again, foreign keys intact."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.migrate import downgrade, upgrade
from openmvno.orders.models import Order, OrderKind
from openmvno.payments.models import PaymentAttempt, PaymentMethodKind, PaymentRefund, RefundReason
from openmvno.runtime import build_runtime
from tests.test_migrations import _fresh_url

BEFORE = "20261202_lifecycle"


async def test_down_and_up_past_saved_cards_keeps_attempts_and_their_refunds(
    tmp_path: Path,
) -> None:
    url = await _fresh_url(tmp_path)
    await upgrade(url)
    rt = build_runtime(Settings(database_url=url, data_dir=tmp_path, secret_key="k" * 32))
    try:
        async with unit_of_work(rt.sessions) as s:
            order = Order(number="CARDS-MIG-1", kind=OrderKind.topup, amount_minor=100,
                          currency="CNY", idempotency_scope="t", idempotency_key="k",
                          request_hash="h")
            s.add(order)
            await s.flush()
            paid = PaymentAttempt(order_id=order.id, provider="sandbox",
                                  method=PaymentMethodKind.card, amount_minor=100,
                                  currency="CNY", next_action={})
            saved_charge = PaymentAttempt(order_id=None, provider="sandbox",
                                          idempotency_key="renewal:x",
                                          method=PaymentMethodKind.card, amount_minor=50,
                                          currency="CNY", next_action={})
            s.add_all([paid, saved_charge])
            await s.flush()
            s.add(PaymentRefund(attempt_id=paid.id, order_id=order.id, provider="sandbox",
                                provider_ref="sbx_1", amount_minor=100, currency="CNY",
                                reason=RefundReason.staff, idempotency_key="attempt:mig"))
    finally:
        await rt.close()
    await downgrade(url, BEFORE)
    await upgrade(url)
    rt = build_runtime(Settings(database_url=url, data_dir=tmp_path, secret_key="k" * 32))
    try:
        async with rt.engine.connect() as conn:
            attempts = (await conn.execute(text("SELECT amount_minor FROM payment_attempts"))).all()
            refunds = (await conn.execute(text(
                "SELECT r.amount_minor FROM payment_refunds r JOIN payment_attempts a "
                "ON a.id = r.attempt_id"))).all()
            if conn.dialect.name == "sqlite":
                assert (await conn.execute(text("PRAGMA foreign_key_check"))).all() == []
    finally:
        await rt.close()
    # the order's attempt and its refund are kept; the order-less charge cannot go down
    assert [a[0] for a in attempts] == [100] and [r[0] for r in refunds] == [100]
