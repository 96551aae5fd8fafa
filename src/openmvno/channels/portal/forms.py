"""Portal form fields get the same limits as the API (:mod:`openmvno.fields`).

Every text field of a posted form is checked by its name as the form arrives
(:func:`openmvno.channels.portal.web.checked_form`): at most as long as the API allows
for the same value (the database column), and no NUL, lone surrogate or other control
character. Values are normalised as the API normalises them (NFC; NFKC for phone
numbers, logins, codes and amounts; passwords are only checked, never changed). A
refused field is a :class:`FormInvalid`, rendered as the form again with a message in
the reader's language — never raw JSON, never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openmvno import fields
from openmvno.errors import InvalidInput
from openmvno.i18n import N_, translate


@dataclass(frozen=True, slots=True)
class Limit:
    max_length: int
    label: str
    """The field's name as the form shows it (a catalog message)."""
    form: fields.Form = "NFC"
    secret: bool = False
    """Checked only: a password is hashed exactly as typed (no normalising, no stripping)."""
    multiline: bool = False
    visible: bool = False
    """When given, it must show something (not only spaces or zero-width characters)."""


# The API's limit for the same value (fields.py / the schemas), by form field name.
FIELDS: dict[str, Limit] = {
    "name": Limit(100, N_("Name"), visible=True),
    "phone": Limit(32, N_("Phone number"), "NFKC"),
    "email": Limit(254, N_("Email"), "NFKC"),
    "login": Limit(254, N_("Phone number or email"), "NFKC"),
    "msisdn": Limit(32, N_("Phone number"), "NFKC"),
    "code": Limit(12, N_("Code"), "NFKC"),
    "password": Limit(128, N_("Password"), secret=True),
    "serial": Limit(80, N_("Serial number"), "NFKC"),
    "secret": Limit(40, N_("PIN"), "NFKC", secret=True),
    "amount": Limit(32, N_("Amount"), "NFKC"),
    "plan": Limit(fields.PLAN_CODE_MAX, N_("Plan")),
    "key": Limit(128, N_("This form")),
    "csrf": Limit(200, N_("This form")),
    "next": Limit(2000, N_("This form")),
}
DEFAULT = Limit(200, N_("This field"))
"""Any other field (a choice, an id, a hidden value): 200 characters is plenty."""

_MESSAGES = {
    fields.TOO_LONG: N_("{field} is too long: at most {max_length} characters."),
    fields.CONTROL: N_("{field} contains a character that cannot be used (such as a control "
                       "character); please type it again."),
    fields.BLANK: N_("{field} is empty or shows nothing; please type it again."),
    fields.SURROGATE: N_("{field} contains a character that cannot be used (such as a control "
                         "character); please type it again."),
}
_OTHER = N_("{field} is not valid; please check it.")


class FormInvalid(InvalidInput):
    """A form field the API would refuse too; ``field`` is the form field's name."""

    def __init__(self, field: str, kind: str, limit: Limit) -> None:
        super().__init__(
            "form_invalid", _MESSAGES.get(kind, _OTHER), field=field, max_length=limit.max_length
        )
        self.field = field
        self.label = limit.label
        self.visitor: Any = None
        """Set by the portal before raising (the page is rendered for this visitor)."""
        self.values: dict[str, str] = {}
        """What the form held that may be shown again: the accepted fields, no secrets."""

    def describe(self, language: str) -> str:
        return translate(
            language, self.message, field=translate(language, self.label),
            max_length=self.params["max_length"],
        )


def limit_for(name: str) -> Limit:
    return FIELDS.get(name, DEFAULT)


def clean(form: dict[str, str]) -> tuple[dict[str, str], FormInvalid | None]:
    """The form with every value checked and normalised, and the first refusal (if any).
    A refused value is dropped from the returned form, so it is never shown again."""
    out: dict[str, str] = {}
    problem: FormInvalid | None = None
    for name, value in form.items():
        limit = limit_for(name)
        try:
            cleaned = fields.clean_text(
                value,
                max_length=limit.max_length,
                multiline=limit.multiline,
                form=limit.form,
                strip=not limit.secret,
            )
        except ValueError as exc:
            kind = getattr(exc, "type", "")
            if problem is None:
                problem = FormInvalid(name, kind if isinstance(kind, str) else "", limit)
            continue
        if limit.visible and cleaned and not fields.has_visible(cleaned):
            problem = problem or FormInvalid(name, fields.BLANK, limit)
            continue
        out[name] = value if limit.secret else cleaned
    if problem is not None:
        problem.values = {
            k: v for k, v in out.items() if not limit_for(k).secret and k not in ("csrf", "key")
        }
    return out, problem
