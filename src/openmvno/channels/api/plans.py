"""/api/v1/plans (public) and /api/v1/admin/plans (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from openmvno.catalog import service as catalog
from openmvno.catalog.models import PlanKind
from openmvno.catalog.schemas import PlanIn, PlanOut, PlanPatch, RetireIn, plan_out
from openmvno.channels.api.schemas import PROBLEMS
from openmvno.fields import PlanCode
from openmvno.web.deps import RT, Admin, Language, Session

router = APIRouter(prefix="/api/v1", tags=["plans"], responses=PROBLEMS)  # type: ignore[arg-type]
Code = Annotated[PlanCode, Path(description="The plan's code, e.g. `DATA-10G`")]


@router.get("/plans")
async def list_plans(
    session: Session, language: Language, kind: PlanKind | None = None
) -> list[PlanOut]:
    """Plans on sale, in the request language (`?lang=`, cookie or Accept-Language)."""
    return [plan_out(p, language) for p in await catalog.list_plans(session, kind=kind)]


@router.get("/plans/{code}")
async def get_plan(code: Code, session: Session, language: Language) -> PlanOut:
    """One plan; a retired plan is still shown (`active: false`) for lines that have it."""
    return plan_out(await catalog.get_plan(session, code), language)


@router.get("/admin/plans", tags=["admin"])
async def admin_list_plans(
    session: Session, language: Language, admin: Admin, kind: PlanKind | None = None
) -> list[PlanOut]:
    """Every plan, retired ones included."""
    plans = await catalog.list_plans(session, kind=kind, include_retired=True)
    return [plan_out(p, language) for p in plans]


@router.post("/admin/plans", tags=["admin"], status_code=status.HTTP_201_CREATED)
async def create_plan(
    body: PlanIn, session: Session, rt: RT, language: Language, admin: Admin
) -> PlanOut:
    """Add a plan (audited). Prices are integer minor units."""
    plan = await catalog.create_plan(
        session, body, actor=admin, default_currency=rt.settings.default_currency
    )
    return plan_out(plan, language)


@router.patch("/admin/plans/{code}", tags=["admin"])
async def update_plan(
    code: Code, body: PlanPatch, session: Session, language: Language, admin: Admin
) -> PlanOut:
    """Change a plan (audited); lines already on it keep what they bought."""
    return plan_out(await catalog.update_plan(session, code, body, actor=admin), language)


@router.post("/admin/plans/{code}/retire", tags=["admin"])
async def retire_plan(
    code: Code, session: Session, language: Language, admin: Admin, body: RetireIn | None = None
) -> PlanOut:
    """Stop selling a plan (audited); lines on it keep it."""
    reason = body.reason if body else ""
    return plan_out(await catalog.retire_plan(session, code, actor=admin, reason=reason), language)
