"""/api/v1/me/notification-preferences (a subscriber's channels and marketing consent)
and /api/v1/admin/notice-templates (the operator's own notice texts; admins, audited), and
/api/v1/admin/reminder-schedule (the days before expiry with a reminder; admins, audited)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, Field, StrictBool

from openmvno import fields
from openmvno.channels.api.schemas import PROBLEMS
from openmvno.notifications import preferences, templates
from openmvno.staff import runtime_settings, schedule
from openmvno.web.deps import RT, Admin, Me, Session

router = APIRouter(prefix="/api/v1", tags=["notices"], responses=PROBLEMS)  # type: ignore[arg-type]

EventName = Annotated[
    str, Path(description="A notice event, e.g. `expiry_reminder`"),
    fields.text(40, min_length=1, pattern=r"^[a-z_]+$"),
]
LanguageName = Annotated[Literal["zh-CN", "en"], Path(description="`zh-CN` or `en`")]
ChannelName = Annotated[Literal["sms", "email"], Path(description="`sms` or `email`")]


class PreferencesIn(fields.Strict):
    """What to change (an absent field stays as it is). SMS and email cannot both be off:
    notices about your lines and payments cannot be switched off."""

    sms: StrictBool | None = None
    email: StrictBool | None = None
    marketing: StrictBool | None = None


class PreferencesOut(BaseModel):
    sms: bool
    email: bool
    marketing: bool
    has_phone: bool
    has_email: bool


def _out(p: preferences.Preferences) -> PreferencesOut:
    return PreferencesOut(sms=p.sms, email=p.email, marketing=p.marketing,
                          has_phone=p.has_phone, has_email=p.has_email)


@router.get("/me/notification-preferences")
async def my_preferences(session: Session, me: Me) -> PreferencesOut:
    """My channels for notices (SMS, email) and whether I get offers."""
    return _out(await preferences.get_preferences(session, account_id=me.id))


@router.put("/me/notification-preferences")
async def set_my_preferences(body: PreferencesIn, session: Session, me: Me) -> PreferencesOut:
    """Change my channels or marketing consent."""
    return _out(await preferences.set_preferences(
        session, account_id=me.id, sms=body.sms, email=body.email, marketing=body.marketing))


class TemplateTextOut(BaseModel):
    language: str
    channel: str
    subject: str
    body: str
    custom: bool


class EventTemplatesOut(BaseModel):
    event: str
    marketing: bool
    urgent: bool
    fires: str
    key: str
    placeholders: list[str]
    texts: list[TemplateTextOut]


class TemplateIn(fields.Strict):
    """The operator's text for one event, language and channel: ``{placeholder}`` names
    from the event's list only; ``{{`` and ``}}`` for literal braces."""

    channel: Literal["sms", "email"]
    subject: Annotated[str, fields.text(200)] = ""
    body: Annotated[str, fields.text(1000, min_length=1, multiline=True)]


class TemplatePreview(BaseModel):
    event: str
    language: str
    channel: str
    subject: str
    body: str
    sample_subject: str = Field(description="The subject filled with sample values")
    sample_body: str = Field(description="The text filled with sample values")


@router.get("/admin/notice-templates", tags=["admin"])
async def list_notice_templates(session: Session, admin: Admin) -> list[EventTemplatesOut]:
    """Every notice event: its placeholders and its text per language and channel."""
    return [
        EventTemplatesOut(
            event=t.event.name, marketing=t.event.marketing, urgent=t.event.urgent,
            fires=t.event.fires, key=t.event.key, placeholders=list(t.event.placeholders),
            texts=[TemplateTextOut(language=x.language, channel=x.channel, subject=x.subject,
                                   body=x.body, custom=x.custom) for x in t.texts],
        )
        for t in await templates.list_templates(session)
    ]


@router.put("/admin/notice-templates/{event}/{language}", tags=["admin"])
async def set_notice_template(
    event: EventName, language: LanguageName, body: TemplateIn, session: Session, rt: RT,
    admin: Admin,
) -> TemplatePreview:
    """Replace the text of one event in one language on one channel (audited); the answer
    shows it filled with sample values."""
    p = await templates.set_template(
        session, actor=admin, event_name=event, language=language, channel=body.channel,
        subject=body.subject, body=body.body, settings=rt.settings,
    )
    return TemplatePreview(event=p.event, language=p.language, channel=p.channel,
                           subject=p.subject, body=p.body, sample_subject=p.sample_subject,
                           sample_body=p.sample_body)


@router.delete("/admin/notice-templates/{event}/{language}/{channel}", tags=["admin"],
               status_code=status.HTTP_204_NO_CONTENT)
async def reset_notice_template(
    event: EventName, language: LanguageName, channel: ChannelName, session: Session,
    admin: Admin,
) -> Response:
    """Go back to the built-in text of one event in one language on one channel (audited;
    nothing to undo is fine)."""
    await templates.reset_template(session, actor=admin, event_name=event, language=language,
                                   channel=channel)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------- reminder schedule (console3)


class ReminderScheduleIn(fields.Strict):
    """The days before a line's expiry on which its reminder is sent: one to five distinct
    whole days between 1 and 60 (anything else is `reminder_days_invalid`)."""

    days: list[Annotated[int, Field(strict=True, ge=-(2**31), le=2**31)]] = Field(
        max_length=16, description="e.g. `[7, 3, 1]`; the order does not matter"
    )
    reason: fields.Reason = Field(default="", description="Why (goes into the audit log)")


class ReminderScheduleOut(BaseModel):
    days: list[int] = Field(description="Largest first")
    source: Literal["console", "environment"] = Field(
        description="`environment`: `OPENMVNO_EXPIRY_REMINDER_DAYS`, until an admin sets one"
    )


@router.get("/admin/reminder-schedule", tags=["admin"])
async def get_reminder_schedule(session: Session, rt: RT, admin: Admin) -> ReminderScheduleOut:
    """The expiry reminder schedule the worker uses now."""
    await runtime_settings.refresh(session, rt, force=True)
    days, source = schedule.current(rt)
    return ReminderScheduleOut(days=days, source=source)


@router.put("/admin/reminder-schedule", tags=["admin"])
async def set_reminder_schedule(
    body: ReminderScheduleIn, session: Session, rt: RT, admin: Admin
) -> ReminderScheduleOut:
    """Change the expiry reminder schedule at run time (audited with before and after);
    every process uses it within `OPENMVNO_RUNTIME_SETTINGS_CACHE_SECONDS`."""
    days = await schedule.set_reminder_days(session, rt, actor=admin, days=body.days,
                                            reason=body.reason)
    return ReminderScheduleOut(days=days, source="console")
