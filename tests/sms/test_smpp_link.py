"""The SMPP sender against the npm ``smpp`` SMSC: encodings, concatenation, receipts,
throttling, a dropped link, two binds."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text

from openmvno.adapters.sms.smpp_models import PartState, SmsPart
from openmvno.adapters.sms.smpp_outbox import SmppSender, delivery_of
from openmvno.adapters.sms.smpp_outbox import _claim_in as claim_in
from openmvno.db import unit_of_work
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxMessage, OutboxState
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
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


CHINESE = ("您的套餐畅享30天将于2027年1月1日到期，届时将从钱包自动续费人民币五十元。"
           "如需关闭自动续费，请回复AUTO OFF，谢谢您一直以来的支持与信任。")


async def test_a_long_chinese_text_goes_as_ucs2_parts_the_peer_joins(
    smpp_rt: Runtime, smsc: Smsc, start_sender: Start
) -> None:
    assert 70 < len(CHINESE) <= 134
    await start_sender()
    oid = await queue(smpp_rt, "+8613800000002", CHINESE)
    msg = await smsc.wait_for(lambda e: e["event"] == "message")
    assert msg["text"] == CHINESE and msg["parts"] == 2 and msg["dcs"] == 8
    assert all(s["esm"] & 0x40 for s in smsc.seen("submit"))  # UDH on both parts
    await until(lambda: _is(smpp_rt, oid, "delivered"))
    async with unit_of_work(smpp_rt.sessions) as s:
        parts = (await s.scalars(select(SmsPart).where(SmsPart.outbox_id == oid))).all()
    assert sorted(p.seq for p in parts) == [1, 2]
    assert {p.state for p in parts} == {PartState.delivered}
    assert len({p.message_id for p in parts}) == 2


async def test_a_failed_receipt_marks_the_row_failed_with_the_smsc_reason(
    smpp_rt: Runtime, smsc: Smsc, start_sender: Start
) -> None:
    await smsc.send(cmd="set", fail_to=["8613800000003"])
    await smsc.wait_for(lambda e: e["event"] == "set")
    await start_sender()
    oid = await queue(smpp_rt, "+8613800000003", "hello")
    assert await until(lambda: _is(smpp_rt, oid, "failed"))
    assert await delivery(smpp_rt, oid) == "failed: UNDELIV err:001"
    # The operator sees it in `openmvno outbox status`, with the SMSC's reason.
    import asyncio
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMVNO_")}
    env.update({"OPENMVNO_ENVIRONMENT": "development",
                "OPENMVNO_DATABASE_URL": smpp_rt.settings.database_url,
                "OPENMVNO_DATA_DIR": str(smpp_rt.settings.data_dir), "COLUMNS": "200"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from openmvno.cli import app; app()", "outbox", "status",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "failed 1" in text and "+8613800000003: UNDELIV err:001" in text


async def test_throttled_submits_are_sent_again_and_arrive_once(
    smpp_rt: Runtime, smsc: Smsc, start_sender: Start
) -> None:
    await smsc.send(cmd="set", throttle_every=3)
    await smsc.wait_for(lambda e: e["event"] == "set")
    sender = await start_sender()
    ids = [await queue(smpp_rt, f"+86138000001{i:02d}", f"message {i}") for i in range(12)]
    for oid in ids:
        await until(lambda oid=oid: _is(smpp_rt, oid, "delivered"))
    texts = sorted(e["text"] for e in smsc.seen("message"))
    assert texts == sorted(f"message {i}" for i in range(12))  # each exactly once
    assert smsc.seen("throttled") and sender.link.stats.throttled == len(smsc.seen("throttled"))


async def test_a_row_still_in_the_senders_hands_is_not_leased_again(smpp_rt: Runtime) -> None:
    """Its batch settled (due again after a throttle) but its task not yet done: a claim
    meanwhile must leave it alone, not lease it for minutes and then drop it unsent."""
    sender = SmppSender(smpp_rt, name="bind-a")
    oid = await queue(smpp_rt, "+8613800000199", "still in hand")
    sender._inflight.add(oid)
    assert await sender._claim_and_prepare(10) == []
    async with unit_of_work(smpp_rt.sessions) as s:
        row = await s.get(OutboxMessage, oid)
        assert row is not None and row.claimed_until is None and row.attempts == 0
    sender._inflight.discard(oid)  # its task done: the next claim takes it
    assert [m.id for m, _ in await sender._claim_and_prepare(10)] == [oid]


async def test_a_claim_takes_its_window_whatever_plan_the_database_picks(
    smpp_rt: Runtime, frozen: FrozenClock
) -> None:
    """Statistics saying the outbox is (nearly) empty let PostgreSQL run a claim's
    ``IN (… LIMIT n FOR UPDATE SKIP LOCKED)`` as the inner side of a nested loop, again
    for every row: a bind with room for 4 took every due SMS. Here the planner is left
    only that join: the claim still takes ``limit`` rows, the oldest due, in due order."""
    queued = []
    for i in range(6):
        frozen.advance(seconds=1)
        queued.append(await queue(smpp_rt, f"+86138000002{i:02d}", f"message {i}"))
    claims = []
    for _ in range(2):
        async with unit_of_work(smpp_rt.sessions) as s:
            if smpp_rt.engine.dialect.name == "postgresql":
                await s.execute(text("SET LOCAL enable_hashjoin = off"))
                await s.execute(text("SET LOCAL enable_mergejoin = off"))
            claims.append([m.id for m in await claim_in(s, 4)])
    assert claims == [queued[:4], queued[4:]]


async def test_two_binds_share_the_outbox_and_each_message_goes_once(
    smpp_rt: Runtime, smsc: Smsc, start_sender: Start
) -> None:
    await start_sender("bind-a")
    await start_sender("bind-b")
    ids = [await queue(smpp_rt, f"+86138000002{i:02d}", f"two binds {i}") for i in range(30)]
    for oid in ids:
        await until(lambda oid=oid: _is(smpp_rt, oid, "delivered"))
    texts = [e["text"] for e in smsc.seen("message")]
    assert sorted(texts) == sorted(f"two binds {i}" for i in range(30))
    assert {e["bind"] for e in smsc.seen("submit")} == {1, 2}  # both binds did work
    assert not smsc.seen("duplicate_part")


async def test_the_smsc_dropping_the_link_mid_stream_loses_and_duplicates_nothing(
    smpp_rt: Runtime, smsc: Smsc, start_sender: Start, frozen: object
) -> None:
    from tests.conftest import FrozenClock

    assert isinstance(frozen, FrozenClock)
    # The SMSC accepts the 5th submit, then drops the link before answering it: that
    # message is in the SMSC's hands although we never got its id.
    await smsc.send(cmd="set", drop_after=5)
    await smsc.wait_for(lambda e: e["event"] == "set")
    sender = await start_sender()
    ids = [await queue(smpp_rt, f"+86138000003{i:02d}", f"drop {i}") for i in range(20)]
    lost = await smsc.wait_for(lambda e: e["event"] == "dropped_before_answer")
    await smsc.wait_for(lambda e: e["event"] == "bound", count=2)  # reconnected
    # Its receipt (sent over the new bind) names a message id we never recorded: the
    # in-doubt part is matched by it and counts as sent — never submitted again.
    # Every message the SMSC took on the first bind (answered or not) gets its receipt
    # answered by us (the SMSC keeps a receipt until it is answered, over any bind).
    taken = {e["id"] for e in smsc.seen("submit") if e["bind"] == 1}
    assert lost["id"] in taken
    await until(lambda: taken <= {e["id"] for e in smsc.seen("receipt_resp")
                                  if e["status"] == 0})
    # Parts that never reached the SMSC were in flight too: they wait out the in-doubt
    # window (no receipt will name them) and then go again.
    frozen.advance(seconds=smpp_rt.settings.smpp_in_doubt_seconds + 1)
    sender.wake.set()
    for oid in ids:
        await until(lambda oid=oid: _is(smpp_rt, oid, "delivered"))
    texts = [e["text"] for e in smsc.seen("message")]
    assert sorted(texts) == sorted(f"drop {i}" for i in range(20))  # once each
    assert [e["to"] for e in smsc.seen("submit")].count(lost["to"]) == 1
    assert sender.link.stats.binds == 2


async def test_a_connection_reset_while_submitting_is_the_link_going_down() -> None:
    """``drain`` raises what the reader met (a reset): the submit is in doubt like any the
    link lost (``LinkDown``, the sender's in-doubt path), not an internal error that put the
    whole batch off for a retry."""
    import asyncio

    from openmvno.adapters.sms.smpp import LinkConfig, LinkDown, SmppLink

    class ResetWriter:
        def write(self, _data: bytes) -> None:
            pass

        async def drain(self) -> None:
            raise ConnectionResetError(104, "Connection reset by peer")

    async def ignore(_: object) -> None:
        pass

    link = SmppLink(LinkConfig(host="127.0.0.1", port=1, system_id="x", password="y"),
                    on_receipt=ignore, on_inbound=ignore)
    link._writer = ResetWriter()  # type: ignore[assignment]
    link.bound.set()
    with pytest.raises(LinkDown, match="connection went"):
        await asyncio.wait_for(link.submit(to="+8613800000001", short_message=b"hi",
                                           data_coding=0, esm_class=0), timeout=5)
    assert link._pending == {}


async def test_a_wrong_password_is_refused_and_retried_with_backoff(
    smpp_rt: Runtime, smsc: Smsc
) -> None:
    import asyncio

    from pydantic import SecretStr

    from openmvno.adapters.sms.smpp_outbox import SmppSender

    rt = Runtime(settings=smpp_rt.settings.model_copy(
        update={"smpp_password": SecretStr("wrong")}), engine=smpp_rt.engine,
        sessions=smpp_rt.sessions, passwords=smpp_rt.passwords)
    sender = SmppSender(rt, name="bad")
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    await smsc.wait_for(lambda e: e["event"] == "bind_refused", count=2)
    await until(lambda: sender.link.stats.bind_failures >= 2)
    assert not sender.link.bound.is_set()
    stop.set()
    await asyncio.wait_for(task, timeout=30)


async def test_stopping_unbinds_gracefully(smpp_rt: Runtime, smsc: Smsc) -> None:
    import asyncio

    from openmvno.adapters.sms.smpp_outbox import SmppSender

    sender = SmppSender(smpp_rt, name="stopper")
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    await asyncio.wait_for(sender.link.bound.wait(), timeout=30)
    stop.set()
    await asyncio.wait_for(task, timeout=30)
    assert await smsc.wait_for(lambda e: e["event"] == "unbind")


async def test_an_idle_link_sends_enquire_link(smpp_rt: Runtime, smsc: Smsc, start_sender: Start
                                               ) -> None:
    await start_sender(smpp_enquire_link_seconds=0.1)
    await smsc.wait_for(lambda e: e["event"] == "enquire_link", count=2)
