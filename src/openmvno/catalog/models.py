"""Plans: what the operator sells, at what price, for how long, with what allowances."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openmvno.db import Base, IdMixin, TimestampMixin, str_enum
from openmvno.money import Money


class PlanKind(enum.StrEnum):
    data = "data"
    voice = "voice"
    mixed = "mixed"
    addon = "addon"
    topup = "topup"


class OverageRule(enum.StrEnum):
    block = "block"
    charge_wallet = "charge_wallet"


class Plan(IdMixin, TimestampMixin, Base):
    __tablename__ = "plans"
    __table_args__ = (
        CheckConstraint("price_minor >= 0", name="price_non_negative"),
        CheckConstraint("validity_days >= 0", name="validity_non_negative"),
    )

    code: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[PlanKind] = mapped_column(str_enum(PlanKind, 16))
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    validity_days: Mapped[int] = mapped_column(default=30)
    data_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    voice_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    sms_count: Mapped[int] = mapped_column(BigInteger, default=0)
    roaming_zones: Mapped[list[str]] = mapped_column(JSON, default=list)
    overage_rule: Mapped[OverageRule] = mapped_column(
        str_enum(OverageRule, 16),
        default=OverageRule.block,
    )
    overage_rates: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Minor units per unit when charging the wallet: ``{"data_mb": 5, "voice_min": 10}``."""
    roaming_rates: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Usage in a zone none of the line's allowances cover (see docs/RATING.md): charged to
    the wallet at these rates (same units as ``overage_rates``); a kind without a rate is
    blocked there."""
    terms_zh: Mapped[str] = mapped_column(Text, default="")
    terms_en: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(default=True)

    @property
    def price(self) -> Money:
        return Money(self.price_minor, self.currency)

    def name(self, language: str) -> str:
        return self.name_zh if language == "zh-CN" else self.name_en

    def terms(self, language: str) -> str:
        return self.terms_zh if language == "zh-CN" else self.terms_en
