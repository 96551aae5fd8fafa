"""/api/v1/lines/{id}/balance."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from openmvno.channels.api.schemas import PROBLEMS
from openmvno.ledger import service as ledger
from openmvno.ledger.schemas import LineBalanceOut, line_balance_out
from openmvno.web.deps import RT, Language, Me, Session

router = APIRouter(prefix="/api/v1", tags=["balance"], responses=PROBLEMS)  # type: ignore[arg-type]


@router.get("/lines/{line_id}/balance")
async def line_balance(
    line_id: uuid.UUID, me: Me, session: Session, language: Language, rt: RT
) -> LineBalanceOut:
    """Data, minutes and SMS left (raw units and text), plan, expiry, next renewal, wallet."""
    balance = await ledger.owned_line_balance(
        session, account_id=me.id, line_id=line_id, language=language,
        currency=rt.settings.default_currency,
    )
    return line_balance_out(balance)
