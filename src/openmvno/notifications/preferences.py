"""A subscriber's notification preferences: which channels notices use (SMS and/or
email) and whether they want marketing. Transactional notices (reminders, renewals, state
changes) cannot be switched off: at least one channel stays on, and a notice still
reaches a subscriber on the other channel if the chosen one has no address. Marketing is
off until the subscriber turns it on."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.models import Account
from openmvno.errors import InvalidInput, NotFound
from openmvno.notifications.models import NotificationPreference


@dataclass(frozen=True)
class Preferences:
    sms: bool
    email: bool
    marketing: bool
    has_phone: bool
    has_email: bool




async def get_preferences(session: AsyncSession, *, account_id: uuid.UUID) -> Preferences:
    """The account's choices (the defaults when it never chose): SMS and email on,
    marketing off."""
    row = (await session.execute(
        select(Account.phone, Account.email, NotificationPreference.sms,
               NotificationPreference.email, NotificationPreference.marketing)
        .outerjoin(NotificationPreference, NotificationPreference.account_id == Account.id)
        .where(Account.id == account_id)
    )).first()
    if row is None:
        raise NotFound("account_not_found", "There is no such account.")
    phone, email, sms_on, email_on, marketing = row
    return Preferences(
        sms=True if sms_on is None else bool(sms_on),
        email=True if email_on is None else bool(email_on),
        marketing=bool(marketing), has_phone=bool(phone), has_email=bool(email),
    )


async def set_preferences(
    session: AsyncSession, *, account_id: uuid.UUID, sms: bool | None, email: bool | None,
    marketing: bool | None,
) -> Preferences:
    """Change what is given (None keeps the current value); refuses switching both
    channels off (notices about the subscriber's own lines and money cannot be stopped)."""
    current = await get_preferences(session, account_id=account_id)
    new_sms = current.sms if sms is None else sms
    new_email = current.email if email is None else email
    new_marketing = current.marketing if marketing is None else marketing
    if not new_sms and not new_email:
        raise InvalidInput(
            "notices_need_a_channel",
            "Notices about your lines and payments cannot be switched off: keep SMS or "
            "email on.",
        )
    row = await session.get(NotificationPreference, account_id)
    if row is None:
        session.add(NotificationPreference(account_id=account_id, sms=new_sms, email=new_email,
                                           marketing=new_marketing))
    else:
        row.sms, row.email, row.marketing = new_sms, new_email, new_marketing
    await session.flush()
    return Preferences(sms=new_sms, email=new_email, marketing=new_marketing,
                       has_phone=current.has_phone, has_email=current.has_email)


__all__ = ["Preferences", "get_preferences", "set_preferences"]
