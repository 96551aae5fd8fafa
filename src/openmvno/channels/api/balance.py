"""/api/v1/lines/{id}/balance."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from openmvno.channels.api.schemas import PROBLEMS
from openmvno.ledger import service as ledger
from openmvno.ledger.schemas import LineBalanceOut, line_balance_out
from openmvno.runtime import Runtime
from openmvno.web.deps import Me, Session

router = APIRouter(prefix="/api/v1", tags=["balance"], responses=PROBLEMS)  # type: ignore[arg-type]


@router.get("/lines/{line_id}/balance")
async def line_balance(
    line_id: uuid.UUID, me: Me, session: Session, request: Request
) -> LineBalanceOut:
    """Data, minutes and SMS left (raw units and text), plan, expiry, next renewal, wallet."""
    # The read the app, SMS BAL and USSD make most: the language and the runtime come
    # straight from the request (each dependency costs FastAPI work on every request).
    runtime: Runtime = request.app.state.runtime
    balance = await ledger.owned_line_balance(
        session, account_id=me.id, line_id=line_id, language=request.state.language,
        currency=runtime.settings.default_currency,
    )
    return line_balance_out(balance)
