"""/api/v1/lines/{id}/balance."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from openmvno.channels.api.schemas import PROBLEMS
from openmvno.db import read_connection
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
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    language, currency = request.state.language, runtime.settings.default_currency
    async with read_connection(runtime.sessions) as conn:
        # One SELECT checks the token and reads the balance; only a refusal asks why.
        found = None
        if scheme.lower() == "bearer" and token:
            found = await ledger.token_line_balance(
                conn, token=token, line_id=line_id, language=language, currency=currency
            )
        if found is None:
            me = await bearer_caller(request, conn)  # 401 for a bad token
            found = await ledger.owned_line_balance(  # 404 for another's line
                conn, account_id=me.id, line_id=line_id, language=language, currency=currency
            )
    balance = found
    body = line_balance_out(balance).model_dump_json().encode()
    return Response(body, media_type="application/json")
