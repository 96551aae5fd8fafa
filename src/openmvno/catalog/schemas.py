"""Plan shapes: what an admin (API or YAML import) may send, and what callers see."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from openmvno import fields
from openmvno.catalog.models import OverageRule, Plan, PlanKind
from openmvno.fields import Days, LongText, MinorAmount, Name, Reason, Units
from openmvno.formatting import Formatter

_GB = 1024**3
_MB = 1024**2

PlanCode = fields.PlanCode
Zone = Annotated[
    str,
    StringConstraints(to_upper=True, pattern=r"^[A-Za-z0-9_-]{2,20}$"),
    fields.text(20, min_length=2),
]
Count = Units
OverageUnit = Annotated[str, fields.text(20, min_length=1)]
OVERAGE_UNITS = frozenset({"data_mb", "voice_min", "sms"})


def _expand_units(data: Any) -> Any:
    """Let people write ``data_gb: 10`` / ``data_mb`` / ``voice_minutes`` instead of raw units."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key, factor, target in (
        ("data_gb", _GB, "data_bytes"),
        ("data_mb", _MB, "data_bytes"),
        ("voice_minutes", 60, "voice_seconds"),
    ):
        if key in out:
            value = out.pop(key)
            if target in out:
                raise ValueError(f"give either {key} or {target}, not both")
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{key} must be a whole number")
            out[target] = value * factor
    return out


class _PlanFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name_zh: Name
    name_en: Name
    price_minor: MinorAmount = Field(
        description="Price in minor units (fen, cents); never a float"
    )
    currency: fields.Currency | None = Field(
        default=None, description="ISO 4217; default: the operator's"
    )
    validity_days: Days = 30
    data_bytes: Count = 0
    voice_seconds: Count = 0
    sms_count: Count = 0
    roaming_zones: list[Zone] = Field(default_factory=list, max_length=50)
    overage_rule: OverageRule = OverageRule.block
    overage_rates: dict[OverageUnit, MinorAmount] = Field(
        default_factory=dict,
        max_length=len(OVERAGE_UNITS),
        description='Minor units per unit: {"data_mb", "voice_min", "sms"}',
    )
    roaming_rates: dict[OverageUnit, MinorAmount] = Field(
        default_factory=dict,
        max_length=len(OVERAGE_UNITS),
        description="Minor units per unit for usage in a zone no allowance covers (else blocked)",
    )
    terms_zh: LongText = ""
    terms_en: LongText = ""


class PlanIn(_PlanFields):
    """A whole plan (create, or one row of a YAML import)."""

    code: PlanCode
    kind: PlanKind

    @model_validator(mode="before")
    @classmethod
    def _expand(cls, data: Any) -> Any:
        return _expand_units(data)

    @model_validator(mode="after")
    def _consistent(self) -> PlanIn:
        check_plan_rules(self.model_dump())
        return self


class PlanPatch(BaseModel):
    """Fields to change on an existing plan (code and kind never change). A field left out
    keeps its value; ``null`` is not a value (every field of a plan has one)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name_zh: Name | None = None
    name_en: Name | None = None
    price_minor: MinorAmount | None = None
    currency: fields.Currency | None = None
    validity_days: Days | None = None
    data_bytes: Count | None = None
    voice_seconds: Count | None = None
    sms_count: Count | None = None
    roaming_zones: list[Zone] | None = Field(default=None, max_length=50)
    overage_rule: OverageRule | None = None
    overage_rates: dict[OverageUnit, MinorAmount] | None = Field(
        default=None, max_length=len(OVERAGE_UNITS)
    )
    roaming_rates: dict[OverageUnit, MinorAmount] | None = Field(
        default=None, max_length=len(OVERAGE_UNITS)
    )
    terms_zh: LongText | None = None
    terms_en: LongText | None = None
    reason: Reason = Field(default="", description="Kept in the audit log")

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Left out means unchanged (the service reads ``exclude_unset``); an explicit null
        # would be written to a NOT NULL column (it was a 500).
        if value is None:
            raise PydanticCustomError("null_value", "Leave the field out to keep its value")
        return value

    @model_validator(mode="before")
    @classmethod
    def _expand(cls, data: Any) -> Any:
        return _expand_units(data)


class RetireIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: Reason = ""


def check_plan_rules(p: dict[str, Any]) -> None:
    """Rules across fields; raises ``ValueError`` with a plain reason."""
    kind = PlanKind(p["kind"])
    data, voice, sms = p["data_bytes"], p["voice_seconds"], p["sms_count"]
    if kind is PlanKind.topup:
        if data or voice or sms or p["roaming_zones"]:
            raise ValueError("a top-up carries money only: no data, voice, SMS or roaming")
        if p["price_minor"] <= 0:
            raise ValueError("a top-up needs a price above zero")
    else:
        if p["validity_days"] < 1:
            raise ValueError("validity_days must be at least 1 for this kind of plan")
        if kind is PlanKind.data and data <= 0:
            raise ValueError("a data plan needs data_bytes above zero")
        if kind is PlanKind.voice and voice <= 0:
            raise ValueError("a voice plan needs voice_seconds above zero")
        if kind is PlanKind.mixed and (data <= 0 or voice <= 0):
            raise ValueError("a mixed plan needs both data_bytes and voice_seconds above zero")
        if kind is PlanKind.addon and data + voice + sms <= 0:
            raise ValueError("an add-on needs some data, voice or SMS")
    rates = p["overage_rates"] or {}
    unknown = set(rates) - OVERAGE_UNITS
    if unknown:
        raise ValueError(f"unknown overage rate(s) {sorted(unknown)}; use data_mb, voice_min, sms")
    roaming = p.get("roaming_rates") or {}
    unknown = set(roaming) - OVERAGE_UNITS
    if unknown:
        raise ValueError(f"unknown roaming rate(s) {sorted(unknown)}; use data_mb, voice_min, sms")
    if kind is PlanKind.topup and roaming:
        raise ValueError("a top-up carries money only: no data, voice, SMS or roaming")
    if OverageRule(p["overage_rule"]) is OverageRule.charge_wallet and not rates:
        raise ValueError("overage_rule charge_wallet needs overage_rates")


class MoneyOut(BaseModel):
    minor: int
    currency: str
    formatted: str


class AllowancesOut(BaseModel):
    data_bytes: int
    data: str
    voice_seconds: int
    voice: str
    sms: int
    sms_text: str


class OverageOut(BaseModel):
    rule: OverageRule
    rates: dict[str, int]
    roaming_rates: dict[str, int] = Field(
        default_factory=dict, description="Wallet rates where no allowance covers the zone"
    )


class PlanOut(BaseModel):
    code: str
    kind: PlanKind
    name: str
    name_zh: str
    name_en: str
    price: MoneyOut
    validity_days: int
    allowances: AllowancesOut
    roaming_zones: list[str]
    overage: OverageOut
    terms: str
    active: bool


def plan_out(plan: Plan, language: str) -> PlanOut:
    """A plan as a caller in ``language`` sees it: formatted price, allowances and terms."""
    fmt = Formatter(language)
    return PlanOut(
        code=plan.code,
        kind=plan.kind,
        name=plan.name(language),
        name_zh=plan.name_zh,
        name_en=plan.name_en,
        price=MoneyOut(
            minor=plan.price_minor, currency=plan.currency, formatted=plan.price.format(language)
        ),
        validity_days=plan.validity_days,
        allowances=AllowancesOut(
            data_bytes=plan.data_bytes,
            data=fmt.data(plan.data_bytes),
            voice_seconds=plan.voice_seconds,
            voice=fmt.minutes(plan.voice_seconds),
            sms=plan.sms_count,
            sms_text=fmt.sms(plan.sms_count),
        ),
        roaming_zones=list(plan.roaming_zones or []),
        overage=OverageOut(
            rule=plan.overage_rule, rates=dict(plan.overage_rates or {}),
            roaming_rates=dict(plan.roaming_rates or {}),
        ),
        terms=plan.terms(language),
        active=plan.active,
    )
