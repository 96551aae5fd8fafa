"""Translations (babel ``.po`` catalogs, zh_CN and en) and locale helpers.

Message ids are English sentences; the English catalog is the identity. The zh_CN
catalog is every ``*.po`` file in ``zh_CN/LC_MESSAGES`` (one per domain), merged.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.messages.pofile import read_po

LANGUAGES = ("zh-CN", "en")
_HERE = Path(__file__).parent


def normalize_language(value: str | None, default: str = "zh-CN") -> str:
    """Map ``zh``, ``zh_CN``, ``zh-Hans``, ``en-US`` ... to one of :data:`LANGUAGES`."""
    if not value:
        return default
    v = value.strip().lower().replace("_", "-")
    if v.startswith("zh"):
        return "zh-CN"
    if v.startswith("en"):
        return "en"
    return default


def from_accept_language(header: str | None, default: str = "zh-CN") -> str:
    """Pick the best supported language from an ``Accept-Language`` header."""
    if not header:
        return default
    ranked: list[tuple[float, str]] = []
    for part in header.split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        lang = tag.strip().lower()
        if lang.startswith(("zh", "en")):
            ranked.append((weight, lang))
    if not ranked:
        return default
    ranked.sort(key=lambda x: -x[0])
    return normalize_language(ranked[0][1], default)


def babel_locale(language: str) -> Locale:
    return Locale.parse("zh_CN" if normalize_language(language) == "zh-CN" else "en_US")


@cache
def _catalog(language: str) -> dict[str, str]:
    if language != "zh-CN":
        return {}
    merged: dict[str, str] = {}
    for path in sorted((_HERE / "zh_CN" / "LC_MESSAGES").glob("*.po")):
        with path.open("rb") as f:
            catalog = read_po(f, locale="zh_CN")
        merged.update({str(m.id): str(m.string) for m in catalog if m.id and m.string})
    return merged


def N_(message: str) -> str:  # noqa: N802 - the gettext convention
    """Mark a message for the catalog where it is translated later."""
    return message


class Term(str):
    """A message parameter that is itself a catalog message (a payment method's name): it
    is translated with the message it fills, into the reader's language."""

    __slots__ = ()


def translate(language: str, message: str, **params: Any) -> str:
    """Translate ``message`` into ``language`` and fill ``{placeholders}`` (a :class:`Term`
    parameter translated too)."""
    catalog = _catalog(normalize_language(language))
    text = catalog.get(message, message)
    if not params:
        return text
    return text.format(
        **{k: catalog.get(v, v) if isinstance(v, Term) else v for k, v in params.items()}
    )
