"""Write audit events for staff (and operator CLI) actions."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.models import Account
from openmvno.audit.models import AuditEvent


async def record(
    session: AsyncSession,
    *,
    actor: Account | uuid.UUID | None,
    action: str,
    subject_type: str,
    subject_id: str | uuid.UUID,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event in the caller's transaction (``actor=None``: the operator CLI)."""
    actor_id = actor.id if isinstance(actor, Account) else actor
    event = AuditEvent(
        actor_id=actor_id,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        reason=reason[:500],
        data=data or {},
    )
    session.add(event)
    await session.flush()
    return event
