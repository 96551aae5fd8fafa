"""The subscriber notices usage sends, through ``notifications.notices`` (contract 3):
exactly once per key, in the subscriber's language and channels, through the outbox."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger("openmvno.usage")


@dataclass(frozen=True, slots=True)
class UsageNotice:
    account_id: uuid.UUID
    event: str
    key: str
    line_id: uuid.UUID | None
    params: dict[str, Any] = field(default_factory=dict)
    urgent: bool = False


async def send(session: AsyncSession, notices: Sequence[UsageNotice]) -> int:
    """Queue ``notices`` (each at most once per key); returns how many were new."""
    if not notices:
        return 0
    from openmvno.notifications import notices as service

    return await service.notify_many(session, [
        service.NoticeRequest(
            account_id=n.account_id, event=n.event, key=n.key, params=n.params,
            line_id=n.line_id, urgent=n.urgent,
        )
        for n in notices
    ])


__all__ = ["UsageNotice", "send"]
