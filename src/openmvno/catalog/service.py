"""Plans: list and look up what is sold; create, change, retire and import them (staff)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.models import Account
from openmvno.audit import service as audit
from openmvno.catalog.imports import ImportRejected, ImportSummary, RowError, describe
from openmvno.catalog.models import Plan, PlanKind
from openmvno.catalog.schemas import PlanIn, PlanPatch, check_plan_rules
from openmvno.errors import Conflict, InvalidInput, NotFound

KIND_ORDER = [PlanKind.data, PlanKind.voice, PlanKind.mixed, PlanKind.addon, PlanKind.topup]
_FIELDS = (
    "name_zh", "name_en", "price_minor", "currency", "validity_days", "data_bytes",
    "voice_seconds", "sms_count", "roaming_zones", "overage_rule", "overage_rates",
    "roaming_rates", "terms_zh", "terms_en",
)


async def list_plans(
    session: AsyncSession, *, kind: PlanKind | str | None = None, include_retired: bool = False
) -> list[Plan]:
    """Plans on sale (or all with ``include_retired``), by kind, then price, then code."""
    order = case({k.value: i for i, k in enumerate(KIND_ORDER)}, value=Plan.kind)
    query = select(Plan).order_by(order, Plan.price_minor, Plan.code)
    if kind is not None:
        query = query.where(Plan.kind == PlanKind(kind))
    if not include_retired:
        query = query.where(Plan.active.is_(True))
    return list((await session.scalars(query)).all())


async def get_plan(session: AsyncSession, code: str) -> Plan:
    """A plan by code, retired ones included (lines keep their retired plan)."""
    plan = await session.scalar(select(Plan).where(Plan.code == code.strip()))
    if plan is None:
        raise NotFound("plan_not_found", "There is no plan {code}.", code=code)
    return plan


async def get_sellable_plan(session: AsyncSession, code: str) -> Plan:
    """A plan that may be bought now; a retired plan is a 409."""
    plan = await get_plan(session, code)
    if not plan.active:
        raise Conflict(
            "plan_retired", "The plan {code} is no longer sold; choose another.", code=plan.code
        )
    return plan


def _values(data: PlanIn, default_currency: str) -> dict[str, Any]:
    values = data.model_dump(include=set(_FIELDS))
    values["currency"] = values["currency"] or default_currency
    return values


async def create_plan(
    session: AsyncSession, data: PlanIn, *, actor: Account | None, default_currency: str
) -> Plan:
    """Add a plan on sale; a taken code is a 409."""
    if await session.scalar(select(Plan.id).where(Plan.code == data.code)):
        raise Conflict("plan_exists", "A plan with the code {code} already exists.", code=data.code)
    plan = Plan(code=data.code, kind=data.kind, active=True, **_values(data, default_currency))
    session.add(plan)
    await session.flush()
    await audit.record(
        session, actor=actor, action="plan.create", subject_type="plan", subject_id=plan.code,
        data=data.model_dump(mode="json"),
    )
    return plan


async def update_plan(
    session: AsyncSession, code: str, patch: PlanPatch, *, actor: Account | None
) -> Plan:
    """Change some fields; the plan must still make sense afterwards. Lines already on the
    plan keep what they bought; new prices apply to the next purchase."""
    plan = await get_plan(session, code)
    changes = patch.model_dump(exclude_unset=True, exclude={"reason"})
    merged = {f: getattr(plan, f) for f in _FIELDS} | changes | {"kind": plan.kind}
    try:
        check_plan_rules(merged)
    except ValueError as exc:
        raise InvalidInput(
            "plan_invalid", "The plan does not add up: {reason}.", reason=str(exc)
        ) from exc
    before = {f: _jsonable(getattr(plan, f)) for f in changes}
    for field, value in changes.items():
        setattr(plan, field, value)
    await session.flush()
    await audit.record(
        session, actor=actor, action="plan.update", subject_type="plan", subject_id=plan.code,
        reason=patch.reason,
        data={"before": before, "after": {k: _jsonable(v) for k, v in changes.items()}},
    )
    return plan


async def retire_plan(
    session: AsyncSession, code: str, *, actor: Account | None, reason: str = ""
) -> Plan:
    """Stop selling a plan. Lines on it keep it until they buy another."""
    plan = await get_plan(session, code)
    if plan.active:
        plan.active = False
        await session.flush()
        await audit.record(
            session, actor=actor, action="plan.retire", subject_type="plan",
            subject_id=plan.code, reason=reason,
        )
    return plan


async def import_plans(
    session: AsyncSession, document: Any, *, default_currency: str, actor: Account | None = None
) -> ImportSummary:
    """Upsert plans by code from a parsed YAML document (a list, or ``{plans: [...]}``).

    Every row is validated first; if any is bad, :class:`ImportRejected` lists them all
    (1-based item numbers) and nothing is written."""
    rows = document.get("plans") if isinstance(document, dict) else document
    if not isinstance(rows, list) or not rows:
        raise ImportRejected([RowError(0, "expected a list of plans (or a 'plans:' list)")])
    valid: list[PlanIn] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows, start=1):
        try:
            item = PlanIn.model_validate(row)
        except ValidationError as exc:
            errors.append(RowError(index, describe(exc)))
            continue
        if item.code in seen:
            errors.append(RowError(index, f"code {item.code} repeats row {seen[item.code]}"))
            continue
        seen[item.code] = index
        valid.append(item)
    if errors:
        raise ImportRejected(errors)
    existing = {
        p.code: p for p in await session.scalars(select(Plan).where(Plan.code.in_(list(seen))))
    }
    errors = [
        RowError(seen[i.code], f"{i.code} is a {existing[i.code].kind} plan; kind cannot change")
        for i in valid
        if i.code in existing and existing[i.code].kind != i.kind
    ]
    if errors:
        raise ImportRejected(errors)
    created = updated = unchanged = 0
    for item in valid:
        values = _values(item, default_currency)
        plan = existing.get(item.code)
        if plan is None:
            session.add(Plan(code=item.code, kind=item.kind, active=True, **values))
            created += 1
            continue
        diff = {k: v for k, v in values.items() if getattr(plan, k) != v}
        for field, value in diff.items():
            setattr(plan, field, value)
        if diff:
            updated += 1
        else:
            unchanged += 1
    await session.flush()
    summary = ImportSummary(created=created, updated=updated, unchanged=unchanged)
    await audit.record(
        session, actor=actor, action="plan.import", subject_type="plan", subject_id="*",
        data={"created": created, "updated": updated, "unchanged": unchanged, "codes": list(seen)},
    )
    return summary


def _jsonable(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value
