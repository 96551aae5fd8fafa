"""Import every domain's models so ``Base.metadata`` is complete (Alembic, tests)."""

from openmvno.accounts.models import Account, AuthToken, OneTimeCode
from openmvno.audit.models import AuditEvent
from openmvno.catalog.models import Plan
from openmvno.db import Base
from openmvno.lines.models import BindAttempt, Line, LineEvent
from openmvno.notifications.models import OutboxMessage

__all__ = [
    "Account",
    "AuditEvent",
    "AuthToken",
    "Base",
    "BindAttempt",
    "Line",
    "LineEvent",
    "OneTimeCode",
    "OutboxMessage",
    "Plan",
]
