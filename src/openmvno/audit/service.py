"""Write audit events for staff (and operator CLI) actions."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.models import Account, Role
from openmvno.audit.models import AuditEvent

STAFF_ROLES = (Role.agent, Role.admin)


async def record(
    session: AsyncSession,
    *,
    actor: Account | uuid.UUID | None,
    action: str,
    subject_type: str,
    subject_id: str | uuid.UUID,
    reason: str = "",
    data: dict[str, Any] | None = None,
    account_id: uuid.UUID | None = None,
) -> AuditEvent:
    """Append one audit event in the caller's transaction (``actor=None``: the operator CLI;
    ``account_id``: the subscriber whose data the action touched)."""
    actor_id = actor.id if isinstance(actor, Account) else actor
    event = AuditEvent(
        actor_id=actor_id,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        account_id=account_id,
        reason=reason[:500],
        data=data or {},
    )
    session.add(event)
    await session.flush()
    return event


def acts_for_someone_else(actor: Account | None, account_id: uuid.UUID | None) -> bool:
    """True when ``actor`` is staff touching data that is not their own (a guest's, or a
    subscriber's): that is what the audit trail must show."""
    return actor is not None and actor.role in STAFF_ROLES and account_id != actor.id


async def staff_access(
    session: AsyncSession,
    *,
    actor: Account | None,
    action: str,
    subject_type: str,
    subject_id: str | uuid.UUID,
    account_id: uuid.UUID | None,
    data: dict[str, Any] | None = None,
) -> AuditEvent | None:
    """Record that staff read or acted on someone else's data (who, what, whose, when);
    a subscriber acting on their own data records nothing."""
    if not acts_for_someone_else(actor, account_id):
        return None
    return await record(
        session, actor=actor, action=action, subject_type=subject_type, subject_id=subject_id,
        account_id=account_id, data=data,
    )
