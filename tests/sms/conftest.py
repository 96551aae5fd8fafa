"""SMPP fixtures: the npm ``smpp`` SMSC on loopback and senders bound to it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from openmvno.adapters.sms.smpp_outbox import InboundHandler, SmppSender
from openmvno.runtime import Runtime
from tests.sms.peer import PASSWORD, SYSTEM_ID, Smsc


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    peer = await Smsc().start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture
def smpp_rt(rt: Runtime, smsc: Smsc) -> Runtime:
    """The test runtime with SMS over SMPP to the peer (quick polls and backoff)."""
    rt.settings = rt.settings.model_copy(update={
        "sms_adapter": "smpp", "smpp_host": "127.0.0.1", "smpp_port": smsc.port,
        "smpp_system_id": SYSTEM_ID, "smpp_password": SecretStr(PASSWORD), "short_code": "10086",
        "worker_poll_seconds": 0.02, "smpp_reconnect_min_seconds": 0.05,
        "smpp_reconnect_max_seconds": 0.2, "smpp_throttle_pause_seconds": 0.05,
        "smpp_response_timeout_seconds": 5.0, "smpp_window": 4,
        "smpp_max_per_second": 1000.0,
    })
    return rt


Start = Callable[..., Awaitable[SmppSender]]


@pytest.fixture
async def start_sender(smpp_rt: Runtime) -> AsyncIterator[Start]:
    """Start SMPP senders (each its own bind) as tasks; all are stopped at the end."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(name: str = "bind-a", on_inbound: InboundHandler | None = None,
                    **changes: Any) -> SmppSender:
        rt = smpp_rt
        if changes:
            rt = Runtime(settings=smpp_rt.settings.model_copy(update=changes),
                         engine=smpp_rt.engine, sessions=smpp_rt.sessions,
                         passwords=smpp_rt.passwords, extras=smpp_rt.extras)
        sender = SmppSender(rt, name=name, on_inbound=on_inbound)
        stop = asyncio.Event()
        running.append((stop, asyncio.create_task(sender.run(stop))))
        await asyncio.wait_for(sender.link.bound.wait(), timeout=30)
        return sender

    yield start
    for stop, _ in running:
        stop.set()
    for _, task in running:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=30)
