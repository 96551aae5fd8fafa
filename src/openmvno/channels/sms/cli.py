"""``openmvno smpp``: the long-lived SMPP process (one transceiver bind per process).

It is its own process, not part of ``openmvno worker``: an SMSC grants an operator a
fixed number of binds per system_id, so the number of binds must be the number of
processes the operator chose to run — not a side effect of how many workers (or
``serve --workers N`` with their embedded workers) happen to be up. Workers leave SMS
rows alone while ``sms_adapter=smpp``; each ``openmvno smpp`` claims them, submits them
over its bind, takes delivery receipts and hands inbound (MO) messages to the SMS
command channel, whose replies go back through the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from openmvno.adapters.sms.smpp import Inbound
from openmvno.adapters.sms.smpp_outbox import SmppSender
from openmvno.channels.sms.commands import Incoming, handle, handle_many
from openmvno.commandline import refuse, settings_for
from openmvno.runtime import Runtime, build_runtime


def sender_for(rt: Runtime, name: str | None = None) -> SmppSender:
    """A sender whose inbound messages run as SMS commands (those that arrive together in
    one transaction: see ``Coalescer``)."""

    async def on_inbound(message: Inbound) -> None:
        await handle(rt, sender=message.sender, text=message.text, channel="smpp")

    async def on_inbound_many(messages: Sequence[Inbound]) -> None:
        await handle_many(rt, [Incoming(m.sender, m.text, "smpp") for m in messages])

    return SmppSender(rt, name=name, on_inbound=on_inbound, on_inbound_many=on_inbound_many)


async def run(rt: Runtime, stop: asyncio.Event, name: str | None = None) -> None:
    await sender_for(rt, name).run(stop)


def smpp(
    data_dir: Annotated[Path | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option(help="This bind's name in logs and records")] = None,
) -> None:
    """Bind to the SMSC and send the outbox's SMS; take receipts and inbound commands.
    Stops cleanly (unbind) on SIGTERM or Ctrl-C. Run one per bind the SMSC allows."""
    from openmvno.logs import setup_logging

    settings = settings_for(data_dir, serving=True, migrated=True)
    if settings.sms_adapter != "smpp":
        refuse(["OPENMVNO_SMS_ADAPTER is not smpp: `openmvno smpp` has nothing to send"])
        raise typer.Exit(2)
    setup_logging(json_lines=settings.log_json)
    rt = build_runtime(settings)
    label = name or f"{socket.gethostname()}-{__import__('os').getpid()}"

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await run(rt, stop, label)
        finally:
            await rt.close()

    asyncio.run(main())
