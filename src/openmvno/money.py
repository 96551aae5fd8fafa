"""Money as integer minor units plus an ISO 4217 currency. Floats are refused."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision

from openmvno.i18n import babel_locale


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: ``minor`` units (fen, cents) of ``currency``."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise TypeError("Money.minor must be an int of minor units")
        if len(self.currency) != 3 or not self.currency.isupper():
            raise ValueError(f"not an ISO 4217 currency: {self.currency!r}")

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def times(self, n: int) -> Money:
        return Money(self.minor * n, self.currency)

    @property
    def decimal(self) -> Decimal:
        return Decimal(self.minor).scaleb(-get_currency_precision(self.currency))

    def format(self, language: str = "en") -> str:
        """Human form for a locale, e.g. ``¥1,234.50`` (zh-CN) or ``CN¥1,234.50`` (en)."""
        return str(format_currency(self.decimal, self.currency, locale=babel_locale(language)))

    def __str__(self) -> str:
        return f"{self.decimal} {self.currency}"
