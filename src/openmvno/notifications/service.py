"""Queue messages in the outbox (same transaction as the change); list them for dev."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.notifications.notices import insert_outbox


async def enqueue(
    session: AsyncSession,
    *,
    kind: OutboxKind,
    dedupe_key: str,
    recipient: str,
    body: str = "",
    subject: str = "",
    account_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
) -> OutboxMessage:
    """Add one outbox row; an existing row with the same dedupe key is returned as is."""
    existing = await session.scalar(
        select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key)
    )
    if existing is not None:
        return existing
    message = OutboxMessage(
        kind=kind,
        dedupe_key=dedupe_key,
        recipient=recipient,
        body=body,
        subject=subject,
        account_id=account_id,
        payload=payload or {},
    )
    session.add(message)
    await session.flush()
    return message


async def send_sms(
    session: AsyncSession,
    *,
    to: str,
    body: str,
    dedupe_key: str,
    account_id: uuid.UUID | None,
    sensitive: bool = False,
) -> OutboxMessage:
    """Queue an SMS; a ``sensitive`` body (a one-time code) is wiped once delivered."""
    return await enqueue(
        session, kind=OutboxKind.sms, dedupe_key=dedupe_key, recipient=to, body=body,
        account_id=account_id, payload={"sensitive": True} if sensitive else None,
    )


@dataclass(frozen=True, slots=True)
class SmsOut:
    """One SMS for :func:`send_sms_many`."""

    to: str
    body: str
    dedupe_key: str
    account_id: uuid.UUID | None


async def send_sms_many(session: AsyncSession, messages: Sequence[SmsOut]) -> None:
    """Queue many SMS in one statement, each once per dedupe key (a key already queued is
    left as it is, like :func:`enqueue`)."""
    if not messages:
        return
    now = clock.now()
    # A microsecond apart: the outbox sends oldest first, so the replies keep their order.
    await insert_outbox(session, [
        {"id": uuid.uuid4(), "kind": OutboxKind.sms, "dedupe_key": m.dedupe_key[:120],
         "account_id": m.account_id, "recipient": m.to, "subject": "", "body": m.body,
         "payload": {}, "state": OutboxState.pending, "attempts": 0, "next_attempt_at": now,
         "last_error": "", "created_at": now + timedelta(microseconds=i)}
        for i, m in enumerate(messages)
    ])


async def send_email(
    session: AsyncSession,
    *,
    to: str,
    subject: str,
    body: str,
    dedupe_key: str,
    account_id: uuid.UUID | None,
    sensitive: bool = False,
) -> OutboxMessage:
    """Queue an email; a ``sensitive`` body (a one-time code) is wiped once delivered."""
    return await enqueue(
        session, kind=OutboxKind.email, dedupe_key=dedupe_key, recipient=to, subject=subject,
        body=body, account_id=account_id, payload={"sensitive": True} if sensitive else None,
    )


async def list_messages(
    session: AsyncSession, *, kinds: Sequence[OutboxKind], limit: int = 100
) -> Sequence[OutboxMessage]:
    """Newest first: what the dev outbox page shows."""
    rows = await session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.kind.in_(list(kinds)))
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .limit(limit)
    )
    return rows.all()


async def counts(session: AsyncSession) -> dict[tuple[str, str], int]:
    """How many outbox messages there are per (kind, state)."""
    rows = await session.execute(
        select(OutboxMessage.kind, OutboxMessage.state, func.count()).group_by(
            OutboxMessage.kind, OutboxMessage.state
        )
    )
    return {(str(kind), str(state)): n for kind, state, n in rows.all()}


async def dead(session: AsyncSession, *, limit: int = 20) -> Sequence[OutboxMessage]:
    """The newest messages that gave up after every retry."""
    rows = await session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.state == OutboxState.dead)
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .limit(limit)
    )
    return rows.all()


async def requeue_dead(session: AsyncSession) -> int:
    """Give every dead message a fresh set of attempts, due now; returns how many."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.state == OutboxState.dead)
        .values(state=OutboxState.pending, attempts=0, next_attempt_at=clock.now(),
                claimed_until=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)
