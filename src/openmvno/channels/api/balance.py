"""/api/v1/lines/{id}/balance."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from openmvno.channels.api.schemas import PROBLEMS
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.schemas import LineBalanceOut, line_balance_out
from openmvno.runtime import Runtime
from openmvno.web.deps import BEARER_SECURITY, bearer_caller

router = APIRouter(prefix="/api/v1", tags=["balance"], responses=PROBLEMS)  # type: ignore[arg-type]


@router.get(
    "/lines/{line_id}/balance", response_model=LineBalanceOut, openapi_extra=BEARER_SECURITY
)
async def line_balance(line_id: uuid.UUID, request: Request) -> Response:
    """Data, minutes and SMS left (raw units and text), plan, expiry, next renewal, wallet."""
    # The read the app makes most takes no dependencies and skips FastAPI's re-validation
    # of its answer: resolving and checking them cost as much CPU as the read itself.
    runtime: Runtime = request.app.state.runtime
    async with unit_of_work(runtime.sessions, readonly=True) as session:
        me = await bearer_caller(request, session)
        balance = await ledger.owned_line_balance(
            session, account_id=me.id, line_id=line_id, language=request.state.language,
            currency=runtime.settings.default_currency,
        )
    body = line_balance_out(balance).model_dump_json().encode()
    return Response(body, media_type="application/json")
