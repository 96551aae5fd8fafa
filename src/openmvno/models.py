"""Import every domain's models so ``Base.metadata`` is complete (Alembic, tests)."""

from openmvno.accounts.models import Account, AuthToken, OneTimeCode
from openmvno.adapters.payments.sandbox_models import (
    SandboxCard,
    SandboxCharge,
    SandboxPayment,
    SandboxRefund,
    SandboxSetup,
)
from openmvno.adapters.sms.smpp_models import SmsPart
from openmvno.audit.models import AuditEvent
from openmvno.catalog.models import Plan
from openmvno.db import Base
from openmvno.ledger.models import BalanceEntry, Bucket
from openmvno.lines.models import BindAttempt, Line, LineEvent, NumberQuarantine
from openmvno.notifications.models import (
    Notice,
    NoticeTemplate,
    NotificationPreference,
    OutboxMessage,
)
from openmvno.orders.models import Order
from openmvno.payments.auto_topup import AutoTopup, AutoTopupRun
from openmvno.payments.cards import CardSetupSession, PaymentCustomer, SavedCard
from openmvno.payments.models import ExternalEvent, PaymentAttempt, PaymentRefund
from openmvno.ratelimit.models import RateEvent
from openmvno.receipts.models import Receipt, Sequence
from openmvno.renewals.models import AutoRenewSetting
from openmvno.renewals.runs import RenewalRun
from openmvno.selfcare.models import InboundMessage, SmsConfirmation
from openmvno.staff.models import (
    AccountNote,
    CallerVerification,
    RuntimeSetting,
    StaffSession,
    StaffTotp,
)
from openmvno.usage.models import LineBar, NetworkPeer, UsageRecord
from openmvno.worker.models import WorkerJob

__all__ = [
    "Account",
    "AccountNote",
    "AuditEvent",
    "AuthToken",
    "AutoRenewSetting",
    "AutoTopup",
    "AutoTopupRun",
    "BalanceEntry",
    "Base",
    "BindAttempt",
    "Bucket",
    "CallerVerification",
    "CardSetupSession",
    "ExternalEvent",
    "InboundMessage",
    "Line",
    "LineBar",
    "LineEvent",
    "NetworkPeer",
    "Notice",
    "NoticeTemplate",
    "NotificationPreference",
    "NumberQuarantine",
    "OneTimeCode",
    "Order",
    "OutboxMessage",
    "PaymentAttempt",
    "PaymentCustomer",
    "PaymentRefund",
    "Plan",
    "RateEvent",
    "Receipt",
    "RenewalRun",
    "RuntimeSetting",
    "SandboxCard",
    "SandboxCharge",
    "SandboxPayment",
    "SandboxRefund",
    "SandboxSetup",
    "SavedCard",
    "Sequence",
    "SmsConfirmation",
    "SmsPart",
    "StaffSession",
    "StaffTotp",
    "UsageRecord",
    "WorkerJob",
]
