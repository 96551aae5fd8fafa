"""``openmvno smpp`` as a real process, and the worker leaving SMS to it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import select

from openmvno.db import unit_of_work
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxMessage, OutboxState
from openmvno.runtime import Runtime
from openmvno.worker.runner import drain
from tests.sms.peer import PASSWORD, SYSTEM_ID, WAIT, Smsc, until


async def test_workers_leave_sms_rows_to_openmvno_smpp(rt: Runtime) -> None:
    rt.settings = rt.settings.model_copy(update={
        "sms_adapter": "smpp", "smpp_system_id": SYSTEM_ID,
        "smpp_password": SecretStr(PASSWORD)})
    async with unit_of_work(rt.sessions) as s:
        sms = await notifications.send_sms(s, to="+8613800000009", body="hi",
                                           dedupe_key=uuid.uuid4().hex, account_id=None)
        mail = await notifications.send_email(s, to="a@example.com", subject="s", body="b",
                                              dedupe_key=uuid.uuid4().hex, account_id=None)
    await drain(rt)
    async with unit_of_work(rt.sessions) as s:
        sms_row = await s.get(OutboxMessage, sms.id)
        mail_row = await s.get(OutboxMessage, mail.id)
        assert sms_row is not None and mail_row is not None
        assert sms_row.state == OutboxState.pending and sms_row.attempts == 0
        assert mail_row.state == OutboxState.sent


async def test_the_smpp_command_binds_sends_answers_and_unbinds_on_sigterm(
    rt: Runtime, smsc: Smsc, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMVNO_")}
    env.update({
        "OPENMVNO_ENVIRONMENT": "development", "OPENMVNO_DATABASE_URL": rt.settings.database_url,
        "OPENMVNO_DATA_DIR": str(tmp_path), "OPENMVNO_SECRET_KEY": "test-secret-key-0123456789",
        "OPENMVNO_SMS_ADAPTER": "smpp", "OPENMVNO_SMPP_PORT": str(smsc.port),
        "OPENMVNO_SMPP_SYSTEM_ID": SYSTEM_ID, "OPENMVNO_SMPP_PASSWORD": PASSWORD,
        "OPENMVNO_WORKER_POLL_SECONDS": "0.05", "OPENMVNO_LOG_JSON": "false",
        "OPENMVNO_PUBLIC_URL": "http://127.0.0.1:8000",
    })
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from openmvno.cli import app; app()", "smpp", "--name", "cli",
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await smsc.wait_for(lambda e: e["event"] == "bound")
        async with unit_of_work(rt.sessions) as s:
            queued = await notifications.send_sms(s, to="+8613800000010", body="from the CLI",
                                                  dedupe_key=uuid.uuid4().hex, account_id=None)
        got = await smsc.wait_for(lambda e: e["event"] == "message")
        assert got["text"] == "from the CLI"

        async def sent() -> bool:
            async with unit_of_work(rt.sessions) as s:
                row = await s.get(OutboxMessage, queued.id)
                return row is not None and row.state == OutboxState.sent

        await until(sent)
        # An inbound command from a number we do not know: answered in both languages.
        await smsc.send(cmd="mo", **{"from": "8613912345670", "to": "10086", "text": "BAL"})
        reply = await smsc.wait_for(lambda e: e["event"] == "message"
                                    and e["to"] == "8613912345670")
        assert "not registered" in reply["text"]
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=WAIT)
        assert code == 0
        assert await smsc.wait_for(lambda e: e["event"] == "unbind")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    async with unit_of_work(rt.sessions) as s:
        rows = (await s.scalars(select(OutboxMessage))).all()
    assert all(m.state == OutboxState.sent for m in rows)
