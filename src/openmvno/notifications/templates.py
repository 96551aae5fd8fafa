"""The operator's own notice texts: one override per (event, language, channel), used
instead of the built-in translated text from the next notice on, no release needed.
Only the event's known placeholders are accepted, and each change is audited."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.models import Account
from openmvno.audit import service as audit
from openmvno.config import Settings
from openmvno.errors import InvalidInput, NotFound
from openmvno.i18n import LANGUAGES, N_, Term, translate
from openmvno.notifications.models import NoticeTemplate
from openmvno.notifications.notices import (
    EMAIL_BODY,
    EVENTS,
    Channel,
    Event,
    render,
    sample_values,
    template_fields,
)


@dataclass(frozen=True)
class TemplateText:
    channel: Channel
    language: str
    subject: str
    body: str
    custom: bool
    """True: the operator's own text; False: the built-in one."""


@dataclass(frozen=True)
class EventTemplates:
    event: Event
    texts: list[TemplateText]


@dataclass(frozen=True)
class Preview:
    event: str
    language: str
    channel: Channel
    subject: str
    body: str
    sample_subject: str
    sample_body: str


def event_or_404(name: str) -> Event:
    event = EVENTS.get(name)
    if event is None:
        raise NotFound("notice_event_not_found", "There is no notice event {event}.", event=name)
    return event


async def list_templates(session: AsyncSession) -> list[EventTemplates]:
    """Every event with its text per language and channel (the operator's, or built-in)."""
    rows = (await session.scalars(select(NoticeTemplate))).all()
    own = {(r.event, r.language, r.channel): r for r in rows}
    out = []
    for event in EVENTS.values():
        texts = []
        for language in LANGUAGES:
            for channel in ("sms", "email"):
                row = own.get((event.name, language, channel))
                if row is not None:
                    texts.append(TemplateText(channel, language, row.subject, row.body, True))
                    continue
                body = translate(language, event.body)
                if channel == "email":
                    body = translate(language, EMAIL_BODY).replace("{text}", body)
                texts.append(TemplateText(
                    channel, language, translate(language, event.subject) if channel == "email"
                    else "", body, False))
        out.append(EventTemplates(event, texts))
    return out


PARTS = {"text": N_("text"), "subject": N_("subject")}


def _check(event: Event, text: str, part: str) -> None:
    what = Term(PARTS[part])
    try:
        names = template_fields(text)
    except ValueError as exc:
        raise InvalidInput(
            "template_invalid",
            "The {part} has a broken placeholder near {near}: write placeholders as {{name}}, "
            "and braces as {{{{ and }}}}.", part=what, near=str(exc),
        ) from exc
    unknown = sorted(set(names) - set(event.placeholders))
    if unknown:
        raise InvalidInput(
            "template_unknown_placeholder",
            "The {part} uses unknown placeholders ({unknown}); this event knows: {known}.",
            part=what, unknown=", ".join(unknown), known=", ".join(event.placeholders),
        )


async def set_template(
    session: AsyncSession, *, actor: Account, event_name: str, language: str, channel: Channel,
    subject: str, body: str, settings: Settings,
) -> Preview:
    """Store the operator's text (audited) and return it with a preview filled with the
    event's sample values."""
    event = event_or_404(event_name)
    _check(event, body, "text")
    if subject:
        _check(event, subject, "subject")
    if channel == "sms":
        subject = ""
    row = (await session.scalars(select(NoticeTemplate).where(
        NoticeTemplate.event == event.name, NoticeTemplate.language == language,
        NoticeTemplate.channel == channel))).first()
    before = None if row is None else {"subject": row.subject, "body": row.body}
    if row is None:
        row = NoticeTemplate(event=event.name, language=language, channel=channel,
                             subject=subject, body=body, updated_by=actor.id)
        session.add(row)
    else:
        row.subject, row.body, row.updated_by = subject, body, actor.id
    await session.flush()
    await audit.record(
        session, actor=actor, action="notice_template.set", subject_type="notice_template",
        subject_id=f"{event.name}/{language}/{channel}",
        data={"before": before, "after": {"subject": subject, "body": body}},
    )
    values = sample_values(event, language, settings)
    sample = render(event, channel, language, values, {(event.name, language, channel):
                                                       (subject, body)})
    return Preview(event.name, language, channel, subject, body, sample.subject, sample.body)


async def reset_template(
    session: AsyncSession, *, actor: Account, event_name: str, language: str, channel: Channel,
) -> bool:
    """Go back to the built-in text (audited); False when there was no own text."""
    event = event_or_404(event_name)
    row = (await session.scalars(select(NoticeTemplate).where(
        NoticeTemplate.event == event.name, NoticeTemplate.language == language,
        NoticeTemplate.channel == channel))).first()
    if row is None:
        return False
    before = {"subject": row.subject, "body": row.body}
    await session.delete(row)
    await session.flush()
    await audit.record(
        session, actor=actor, action="notice_template.reset", subject_type="notice_template",
        subject_id=f"{event.name}/{language}/{channel}", data={"before": before, "after": None},
    )
    return True


__all__ = ["EventTemplates", "Preview", "TemplateText", "list_templates", "reset_template",
           "set_template"]
