"""/api/v1/lines/{id}/balance."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from openmvno.channels.api.deps import RT, Language, Me, Session
from openmvno.channels.api.schemas import PROBLEMS
from openmvno.ledger import service as ledger
from openmvno.ledger.schemas import LineBalanceOut, line_balance_out
from openmvno.lines import service as lines

router = APIRouter(prefix="/api/v1", tags=["balance"], responses=PROBLEMS)  # type: ignore[arg-type]


@router.get("/lines/{line_id}/balance")
async def line_balance(
    line_id: uuid.UUID, me: Me, session: Session, language: Language, rt: RT
) -> LineBalanceOut:
    """Data, minutes and SMS left (raw units and text), plan, expiry, next renewal, wallet."""
    line = await lines.get_owned(session, account_id=me.id, line_id=line_id)
    balance = await ledger.line_balance(
        session, line=line, language=language, currency=rt.settings.default_currency
    )
    return line_balance_out(balance)
