"""Validated field types for everything that crosses the edge (core: imports no domain).

Every string and integer a caller sends (API bodies, path and query parameters, portal
forms, webhook payloads, CLI imports) goes through one of these types, so nothing a
database cannot store — a NUL byte, a lone surrogate, a string longer than its column,
an integer outside ``BIGINT`` — ever reaches SQLite or PostgreSQL::

    class RegisterIn(Strict):
        name: Name                      # NFC, one line, 1..100 visible characters
        email: Annotated[str, text(254, form="NFKC")] | None = None
        price_minor: MinorAmount         # a JSON integer, 0..10^12

Strings
    :func:`text` builds one: it refuses anything but ``str`` (no coercion), refuses lone
    surrogates, NUL and every other control character (``\\n``, ``\\r``, ``\\t`` only when
    ``multiline``), bidirectional overrides and non-characters, normalises (NFC by default,
    NFKC for identifiers and logins where full-width ``１３８`` must equal ``138``), strips
    surrounding whitespace, and checks ``min_length``/``max_length`` (characters, as the
    database column counts them) after that. A required field must hold something
    visible: a name made of zero-width spaces is as empty as ``""``.
    :func:`clean_text` is the same check as a plain function (portal forms, importers).

Integers
    JSON integers only (``strict``: ``"5"``, ``5.0``, ``true``, ``1e400`` and ``Infinity``
    are refused), ``0 <= n`` and below ``2**63`` or a tighter product limit. (Query
    strings carry digits as text: there, ``Query(ge=..., le=...)`` bounds them.)

Errors are pydantic errors with stable ``type`` values (:data:`ERROR_TYPES`), so the API
renders them as a 422 problem and the portal as a localised message on the form.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Annotated, Any, Final, Literal

from annotated_types import GroupedMetadata
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

Form = Literal["NFC", "NFKC"]

BIGINT_MAX: Final = 2**63 - 1
"""The largest value a ``BIGINT`` column (SQLite INTEGER, PostgreSQL bigint) holds."""
SAFE_INT_MAX: Final = 2**53 - 1
"""The largest integer every JSON client (JavaScript included) reads exactly."""
MINOR_AMOUNT_MAX: Final = 10**12
"""A price or payment of at most 10 billion major units (¥10,000,000,000.00)."""
UNITS_MAX: Final = SAFE_INT_MAX
"""Bytes, seconds or messages in one plan or bucket (8 PiB; sums of many stay < 2**63)."""

# Stable error types (the ``type`` of a field error; the portal maps them to messages).
CONTROL: Final = "text_control_character"
SURROGATE: Final = "text_surrogate"
BLANK: Final = "text_blank"
NOT_TEXT: Final = "text_type"
TOO_LONG: Final = "string_too_long"
TOO_SHORT: Final = "string_too_short"
ERROR_TYPES: Final = frozenset({CONTROL, SURROGATE, BLANK, NOT_TEXT, TOO_LONG, TOO_SHORT})

_LINE_BREAKS = frozenset("\n\r\t")
# Bidirectional embeddings/overrides/isolates and the line/paragraph separators: they make
# one string display as another (a name reading "admin" that is not) or break a line.
_INVISIBLE_TRAPS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
# Characters that show nothing: whitespace, format characters (zero-width space, joiners,
# BOM), combining marks standing alone, the Hangul fillers and braille blank.
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cf", "Mn", "Me"})
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _is_noncharacter(cp: int) -> bool:
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


def _refuse(kind: str, message: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message, ctx or None)


def _check_characters(value: str, multiline: bool) -> None:
    for ch in value:
        cp = ord(ch)
        if 0xD800 <= cp <= 0xDFFF:
            raise _refuse(SURROGATE, "Text contains an invalid character (a lone surrogate)")
        if cp < 0x20 or 0x7F <= cp <= 0x9F:
            if multiline and ch in _LINE_BREAKS:
                continue
            raise _refuse(CONTROL, "Text contains a control character ({char})", char=f"U+{cp:04X}")
        if ch in _INVISIBLE_TRAPS or _is_noncharacter(cp):
            raise _refuse(CONTROL, "Text contains a control character ({char})", char=f"U+{cp:04X}")


def has_visible(value: str) -> bool:
    """True when ``value`` shows at least one character (not only spaces or zero-widths)."""
    return any(
        unicodedata.category(ch) not in _INVISIBLE_CATEGORIES
        and ch not in _FILLERS
        and not ch.isspace()
        for ch in value
    )


def clean_text(
    value: object,
    *,
    max_length: int,
    min_length: int = 0,
    multiline: bool = False,
    form: Form = "NFC",
    strip: bool = True,
) -> str:
    """Check and normalise one string; raises :class:`PydanticCustomError` (a ``ValueError``)
    with a stable ``type`` when it cannot be stored or shown."""
    if not isinstance(value, str):
        raise _refuse(NOT_TEXT, "Input should be a valid string")
    # A string far longer than allowed is refused before any work on it (normalising can
    # shrink a string, but never to a quarter of its length).
    if len(value) > 4 * max_length + 64:
        raise _refuse(
            TOO_LONG, "String should have at most {max_length} characters", max_length=max_length
        )
    _check_characters(value, multiline)
    value = unicodedata.normalize(form, value)
    if form == "NFKC":  # compatibility forms can unfold into characters refused above
        _check_characters(value, multiline)
    if strip:
        value = value.strip()
    if multiline:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    if len(value) > max_length:
        raise _refuse(
            TOO_LONG, "String should have at most {max_length} characters", max_length=max_length
        )
    if len(value) < min_length:
        raise _refuse(
            TOO_SHORT, "String should have at least {min_length} characters", min_length=min_length
        )
    if min_length > 0 and not has_visible(value):
        raise _refuse(BLANK, "Text is empty or shows nothing")
    return value


def text(
    max_length: int,
    *,
    min_length: int = 0,
    multiline: bool = False,
    form: Form = "NFC",
    strip: bool = True,
    pattern: str | None = None,
    description: str | None = None,
    examples: list[str] | None = None,
) -> GroupedMetadata:
    """The metadata for ``Annotated[str, text(...)]``: the cleaning validator plus the
    constraints for the OpenAPI schema (``maxLength``, ``minLength``, ``pattern``), which
    pydantic checks again on the cleaned value."""

    def _validate(value: object) -> object:
        if not isinstance(value, str):
            return value  # the str schema refuses it with pydantic's own error
        return clean_text(
            value,
            max_length=max_length,
            min_length=min_length,
            multiline=multiline,
            form=form,
            strip=strip,
        )

    # The constraints first (they belong to the inner ``str`` schema, and so to the OpenAPI
    # schema), then the cleaning validator, which runs before them.
    return _Text(
        Field(
            min_length=min_length or None,
            max_length=max_length,
            pattern=pattern,
            description=description,
            examples=examples,
        ),
        BeforeValidator(_validate),
    )


class _Text(GroupedMetadata):
    """The validator and the constraints as one ``Annotated`` item (pydantic unpacks it)."""

    __slots__ = ("_items",)

    def __init__(self, *items: Any) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)


# --- strings ---------------------------------------------------------------------------

Name = Annotated[str, text(100, min_length=1)]
"""A person's or a plan's name: one line, 1..100 visible characters (``String(100)``)."""
Reason = Annotated[str, text(500)]
"""Why an operator did something (audit ``reason``, ``String(500)``), may be empty."""
LongText = Annotated[str, text(4000, multiline=True)]
"""Multi-line text such as plan terms (newlines and tabs allowed), up to 4000 characters."""
Login = Annotated[str, text(254, min_length=1, form="NFKC")]
"""A phone number or an email address as typed (NFKC: full-width digits become ASCII)."""
Email = Annotated[str, text(254, min_length=3, form="NFKC")]
Phone = Annotated[str, text(32, min_length=3, form="NFKC")]
"""A phone number as typed; the accounts service parses it to E.164 (``String(20)``)."""
Msisdn = Phone
OneTimeCode = Annotated[str, text(12, min_length=4, form="NFKC")]
OpaqueToken = Annotated[str, text(200, min_length=1, form="NFKC", pattern=r"^[\x21-\x7e]+$")]
"""A bearer/refresh token or any opaque printable-ASCII secret we issued."""
IdempotencyKey = Annotated[str, text(128, min_length=1, pattern=r"^[\x21-\x7e]+$")]
"""The ``Idempotency-Key`` header (``orders.idempotency_key`` is ``String(128)``)."""
ExternalId = Annotated[str, text(120, min_length=1, pattern=r"^[\x21-\x7e]+$")]
"""An identifier another system gave us (a provider's event id or payment reference,
``String(120)``): printable ASCII, no spaces."""

PLAN_CODE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,39}$"
PLAN_CODE_MAX: Final = 40
PlanCode = Annotated[str, text(PLAN_CODE_MAX, min_length=2, pattern=PLAN_CODE_PATTERN)]
"""A plan's code (``String(40)``), e.g. ``DATA-10G``."""
CURRENCY_PATTERN: Final = r"^[A-Z]{3}$"
Currency = Annotated[str, text(3, min_length=3, pattern=CURRENCY_PATTERN)]
"""ISO 4217 alphabetic code."""

# --- integers --------------------------------------------------------------------------

BigCount = Annotated[int, Field(strict=True, ge=0, le=BIGINT_MAX)]
"""Any non-negative JSON integer a ``BIGINT`` column can hold."""
Units = Annotated[int, Field(strict=True, ge=0, le=UNITS_MAX)]
"""Bytes, seconds or messages (0..2**53-1)."""
Count = Units
MinorAmount = Annotated[int, Field(strict=True, ge=0, le=MINOR_AMOUNT_MAX)]
"""Money in minor units (fen, cents): a JSON integer 0..10^12, never a float."""
PositiveMinorAmount = Annotated[int, Field(strict=True, ge=1, le=MINOR_AMOUNT_MAX)]
Days = Annotated[int, Field(strict=True, ge=0, le=3650)]
"""A validity or period in days (up to ten years)."""


class Strict(BaseModel):
    """Request bodies: unknown fields are an error, strings are trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
