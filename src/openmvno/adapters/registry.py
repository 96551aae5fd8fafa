"""Choose adapters from settings (never at import time)."""

from __future__ import annotations

from openmvno.adapters.email import EmailSender, OutboxOnlyEmail, SmtpEmail
from openmvno.adapters.sms import OutboxOnlySms, SmppElsewhere, SmsSender
from openmvno.config import Settings


def sms_sender(settings: Settings) -> SmsSender:
    if settings.sms_adapter == "outbox":
        return OutboxOnlySms()
    if settings.sms_adapter == "smpp":
        return SmppElsewhere()
    raise NotImplementedError(f"SMS adapter {settings.sms_adapter!r} is not available yet")


def email_sender(settings: Settings) -> EmailSender:
    if settings.email_adapter == "smtp":
        return SmtpEmail.from_settings(settings)
    return OutboxOnlyEmail()
