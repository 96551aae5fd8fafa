"""The SMPP sender against the npm ``smpp`` SMSC: encodings, concatenation, receipts,
throttling, a dropped link, two binds."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from openmvno.adapters.sms.smpp_models import PartState, SmsPart
from openmvno.adapters.sms.smpp_outbox import delivery_of
from openmvno.db import unit_of_work
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxMessage, OutboxState
from openmvno.runtime import Runtime
from tests.sms.conftest import Start
from tests.sms.peer import Smsc, until


async def queue(rt: Runtime, to: str, body: str) -> uuid.UUID:
    async with unit_of_work(rt.sessions) as s:
        m = await notifications.send_sms(s, to=to, body=body, dedupe_key=uuid.uuid4().hex,
                                         account_id=None)
        return m.id


async def delivery(rt: Runtime, outbox_id: uuid.UUID) -> str:
    async with unit_of_work(rt.sessions) as s:
        return await delivery_of(s, outbox_id)


async def test_gsm_text_is_submitted_with_registered_delivery_and_its_receipt_marks_the_row(
    smpp_rt: Runtime, smsc: Smsc, start_sender: Start
) -> None:
    await start_sender()
    oid = await queue(smpp_rt, "+8613800000001", "Your code is 123456")
    msg = await smsc.wait_for(lambda e: e["event"] == "message")
    assert msg["to"] == "8613800000001" and msg["text"] == "Your code is 123456"
    submit = smsc.seen("submit")[0]
    assert submit["registered_delivery"] == 1 and submit["from"] == "10086"
    assert submit["dcs"] in (0, 1)  # GSM 7-bit
    assert await until(lambda: delivery(smpp_rt, oid)) and await until(
        lambda: _is(smpp_rt, oid, "delivered"))
    async with unit_of_work(smpp_rt.sessions) as s:
        row = await s.get(OutboxMessage, oid)
        assert row is not None and row.state == OutboxState.sent


async def _is(rt: Runtime, oid: uuid.UUID, want: str) -> bool:
    return (await delivery(rt, oid)).startswith(want)
