"""Saved cards at the built-in **sandbox**: customers, the hosted "save a card" page's
logic, and off-session charges.

* A customer reference is derived from our account id (``sbc_…``): asking twice gives
  the same customer, as a real provider's idempotent customer creation does.
* ``start_card_setup`` records a setup (``sandbox_setups``) and sends the payer to
  ``/sandbox/setup/{reference}`` (see :mod:`openmvno.adapters.payments.sandbox_setup_pages`),
  which takes a test card and issues a reusable token (``sbcard_…``); only brand, last
  four digits, expiry and the token are kept.
* ``charge_saved`` charges a batch of saved cards with **one statement**: an
  ``INSERT … SELECT`` over the batch (one JSON parameter, joined with the saved cards)
  that decides each outcome in SQL and is idempotent per key (``ON CONFLICT
  (idempotency_key) DO UPDATE … RETURNING`` answers a replay with the first charge).

Test cards for saving (any future expiry, any CVC):

=====================  ===========================================================
4242 4242 4242 4242    saves; every off-session charge succeeds (also 5555 5555 5555
                       4444, 6200 0000 0000 0005)
4000 0000 0000 0341    saves; every off-session charge is declined ``insufficient_funds``
4000 0000 0000 3121    saves with an expiry at the end of next month, whatever is typed
                       (for the ``card_expiring`` notice); charges succeed until then,
                       then ``expired``
4000 0000 0000 0002    refused when saving: ``declined``
4000 0000 0000 0069    refused when saving: ``expired``
=====================  ===========================================================
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.adapters.payments import (
    CardSetup,
    CardSetupResult,
    SavedCardDetails,
    SavedCharge,
    SavedChargeResult,
    SetupStatus,
)
from openmvno.adapters.payments.sandbox_models import SandboxCard, SandboxSetup
from openmvno.db import UTCDateTime, unit_of_work
from openmvno.i18n import N_
from openmvno.runtime import Runtime


@dataclass(frozen=True)
class SaveCard:
    number: str
    outcome: str
    """``save`` (charges succeed), ``save_declining`` (charges declined
    ``insufficient_funds``), ``save_expiring`` (expiry forced to next month) or
    ``refuse`` (not saved, ``failure_code``)."""
    failure_code: str | None = None
    label: str = ""


SAVE_CARDS: dict[str, SaveCard] = {
    c.number: c
    for c in (
        SaveCard("4242424242424242", "save", label=N_("Visa: saves, charges succeed")),
        SaveCard("5555555555554444", "save", label=N_("Mastercard: saves, charges succeed")),
        SaveCard("6200000000000005", "save", label=N_("UnionPay: saves, charges succeed")),
        SaveCard("4000000000000341", "save_declining",
                 label=N_("saves; later charges declined (insufficient funds)")),
        SaveCard("4000000000003121", "save_expiring",
                 label=N_("saves; expires at the end of next month")),
        SaveCard("4000000000000002", "refuse", "declined", N_("refused when saving (declined)")),
        SaveCard("4000000000000069", "refuse", "expired", N_("refused when saving (expired)")),
    )
}


def _mac(rt: Runtime, purpose: str, value: str, size: int = 24) -> str:
    mac = hmac.new(rt.secret_key.encode(), f"{purpose}:{value}".encode(), hashlib.sha256)
    return mac.hexdigest()[:size]


def customer_ref(rt: Runtime, account_id: str) -> str:
    return f"sbc_{_mac(rt, 'sandbox-customer', account_id)}"


def setup_reference(rt: Runtime, setup_id: str) -> str:
    """Stable per setup and unguessable without the secret key (the page URL is the
    payer's only credential, like a hosted checkout link)."""
    return f"sbs_{_mac(rt, 'sandbox-setup', setup_id)}"


def charge_reference(rt: Runtime, idempotency_key: str) -> str:
    return f"sbch_{_mac(rt, 'sandbox-charge', idempotency_key)}"


def setup_url(public_url: str, reference: str) -> str:
    return f"{public_url.rstrip('/')}/sandbox/setup/{reference}"


def _result(row: SandboxSetup, card: SandboxCard | None) -> CardSetupResult:
    status: SetupStatus = row.status  # type: ignore[assignment]
    details = None
    if status == "succeeded" and card is not None:
        details = SavedCardDetails(
            card_ref=card.token, customer_ref=card.customer_ref, brand=card.brand,
            last4=card.last4, exp_month=card.exp_month, exp_year=card.exp_year,
        )
    return CardSetupResult(reference=row.reference, status=status, card=details,
                           failure_code=row.failure_code)


async def start_card_setup(
    rt: Runtime, *, setup_id: str, customer: str, return_url: str
) -> CardSetup:
    reference = setup_reference(rt, setup_id)
    try:
        async with unit_of_work(rt.sessions) as session:
            exists = await session.scalar(
                select(SandboxSetup.id).where(SandboxSetup.reference == reference)
            )
            if exists is None:
                session.add(SandboxSetup(
                    reference=reference, setup_id=setup_id, customer_ref=customer,
                    return_url=return_url, status="requires_action",
                ))
    except IntegrityError:
        pass  # created concurrently for the same setup
    return CardSetup(
        reference=reference,
        next_action={"type": "redirect", "url": setup_url(rt.settings.public_url, reference)},
    )


async def retrieve_card_setup(rt: Runtime, reference: str) -> CardSetupResult:
    """Raises ``LookupError`` for an unknown reference."""
    async with rt.sessions() as session:
        row = await session.scalar(select(SandboxSetup).where(SandboxSetup.reference == reference))
        if row is None:
            raise LookupError(f"no sandbox card setup {reference!r}")
        card = None
        if row.card_token:
            card = await session.scalar(
                select(SandboxCard).where(SandboxCard.token == row.card_token)
            )
        return _result(row, card)


def new_token() -> str:
    return f"sbcard_{secrets.token_hex(12)}"


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def save_card(
    session: AsyncSession, row: SandboxSetup, number: str, expiry: str, cvc: str
) -> SaveCard:
    """The hosted page's form for a setup still waiting: validate (raises
    :class:`~openmvno.adapters.payments.sandbox.CardError`), then save the card and
    finish the setup, or refuse it (``failed`` with the card's code). Only brand, last
    four digits, expiry and a new token are written; the caller's transaction commits."""
    from openmvno.adapters.payments.sandbox import CardError, validated_card

    digits, brand, month, year = validated_card(number, expiry, cvc)
    card = SAVE_CARDS.get(digits)
    if card is None:
        raise CardError(
            "card_number",
            N_("This is a sandbox: only the documented test card numbers work."),
        )
    if card.outcome == "refuse":
        row.status = "failed"
        row.failure_code = card.failure_code
        return card
    if card.outcome == "save_expiring":
        now = clock.now()
        year, month = _next_month(now.year, now.month)
    token = new_token()
    session.add(SandboxCard(
        token=token, customer_ref=row.customer_ref, brand=brand, last4=digits[-4:],
        exp_month=month, exp_year=year,
        charges="insufficient_funds" if card.outcome == "save_declining" else "succeed",
    ))
    row.card_token = token
    row.status = "succeeded"
    row.failure_code = None
    return card


async def detach_card(rt: Runtime, card_ref: str) -> None:
    async with unit_of_work(rt.sessions) as session:
        await session.execute(
            update(SandboxCard)
            .where(SandboxCard.token == card_ref, SandboxCard.detached_at.is_(None))
            .values(detached_at=clock.now())
        )


_DECIDE = """
CASE
  WHEN c.id IS NULL THEN 'card_not_found'
  WHEN c.detached_at IS NOT NULL THEN 'card_removed'
  WHEN c.exp_year * 100 + c.exp_month < :ym THEN 'expired'
  WHEN c.charges = 'insufficient_funds' THEN 'insufficient_funds'
  ELSE NULL
END"""

_TAIL = """
ON CONFLICT (idempotency_key) DO UPDATE SET idempotency_key = excluded.idempotency_key
RETURNING idempotency_key, reference, status, decline_code"""

_INSERT = """
INSERT INTO sandbox_charges (reference, idempotency_key, token, amount_minor, currency,
                             description, status, decline_code, created_at)
SELECT x.r, x.k, x.t, x.a, x.cur, x.d,
       CASE WHEN x.code IS NULL THEN 'succeeded' ELSE 'declined' END, x.code, :now
FROM (SELECT v.r, v.k, v.t, v.a, v.cur, v.d, {decide} AS code
      FROM {source}
      LEFT JOIN sandbox_cards c ON c.token = v.t AND c.customer_ref = v.cu) AS x
WHERE true"""

_PG_SOURCE = (
    "jsonb_to_recordset(CAST(:data AS jsonb)) "
    "AS v(r text, k text, t text, cu text, a bigint, cur text, d text)"
)
_SQLITE_SOURCE = (
    "(SELECT json_extract(value, '$.r') AS r, json_extract(value, '$.k') AS k, "
    "json_extract(value, '$.t') AS t, json_extract(value, '$.cu') AS cu, "
    "json_extract(value, '$.a') AS a, json_extract(value, '$.cur') AS cur, "
    "json_extract(value, '$.d') AS d FROM json_each(:data)) AS v"
)


def _statement(dialect: str) -> Any:
    source = _PG_SOURCE if dialect == "postgresql" else _SQLITE_SOURCE
    sql = _INSERT.format(decide=_DECIDE, source=source)
    return text(sql + _TAIL).bindparams(bindparam("now", type_=UTCDateTime()))


async def charge_saved(rt: Runtime, requests: Sequence[SavedCharge]) -> list[SavedChargeResult]:
    """Charge the batch in one statement; results in request order."""
    if not requests:
        return []
    unique: dict[str, SavedCharge] = {}
    for r in requests:
        if r.amount_minor <= 0:
            raise ValueError("amount_minor must be positive")
        unique.setdefault(r.idempotency_key, r)
    data = json.dumps([
        {"r": charge_reference(rt, r.idempotency_key), "k": r.idempotency_key,
         "t": r.card_ref, "cu": r.customer_ref, "a": r.amount_minor,
         "cur": r.currency.upper()[:3], "d": r.description[:200]}
        for r in unique.values()
    ])
    now = clock.now()
    async with unit_of_work(rt.sessions) as session:
        dialect = session.get_bind().dialect.name
        rows = (
            await session.execute(
                _statement(dialect), {"data": data, "now": now, "ym": now.year * 100 + now.month}
            )
        ).all()
    answers = {
        key: SavedChargeResult(
            idempotency_key=key, status="succeeded" if status == "succeeded" else "declined",
            reference=reference, decline_code=code,
        )
        for key, reference, status, code in rows
    }
    return [answers[r.idempotency_key] for r in requests]
