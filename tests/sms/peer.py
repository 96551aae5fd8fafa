"""Run the npm ``smpp`` test SMSC (tests/sms/smsc_peer.js) and read what it saw."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("smsc_peer.js")
SYSTEM_ID = "openmvno"
PASSWORD = "secret12"
WAIT = 30.0
"""Upper bound for one awaited event (a failing test stops here instead of hanging)."""


def node_modules() -> Path:
    """The test-tools folder ``scripts/test`` installs npm ``smpp`` 0.5.1 into (installed
    here the same way when missing, so a single test file runs on its own)."""
    tools = Path(os.environ.get("OPENMVNO_TEST_TOOLS", ROOT / ".test-tools"))
    modules = tools / "node_modules"
    if not (modules / "smpp" / "package.json").exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed for the SMPP peer (scripts/test installs it)"
        tools.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(tools), "--no-audit", "--no-fund",
                        "--silent", "smpp@0.5.1"], check=True)
    return modules


class Smsc:
    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self.port = 0
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Smsc:
        node = shutil.which("node")
        assert node, "node is needed for the SMPP peer"
        env = {**os.environ, "SMPP_NODE_MODULES": str(node_modules()),
               "SMSC_SYSTEM_ID": SYSTEM_ID, "SMSC_PASSWORD": PASSWORD}
        self.proc = await asyncio.create_subprocess_exec(
            node, str(SCRIPT), env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=1 << 20)
        self._reader = asyncio.create_task(self._read())
        listening = await self.wait_for(lambda e: e["event"] == "listening")
        self.port = int(listening["port"])
        return self

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout
        while line := await self.proc.stdout.readline():
            event = json.loads(line)
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    async def send(self, **command: Any) -> None:
        assert self.proc and self.proc.stdin
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()

    def seen(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    async def wait_for(self, match: Callable[[dict[str, Any]], bool],
                       count: int = 1) -> dict[str, Any]:
        """The ``count``-th event matching, waiting for it (bounded by WAIT)."""
        async def found() -> dict[str, Any]:
            async with self._changed:
                while True:
                    hits = [e for e in self.events if match(e)]
                    if len(hits) >= count:
                        return hits[count - 1]
                    await self._changed.wait()

        return await asyncio.wait_for(found(), timeout=WAIT)

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin:
            self.proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        await self.proc.wait()
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader


async def until(check: Callable[[], Any], *, step: float = 0.02) -> Any:
    """Poll ``check`` (an awaitable factory or a plain function) until it is truthy,
    bounded by WAIT: for states the database reaches, not for timing."""
    async def loop() -> Any:
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(step)

    return await asyncio.wait_for(loop(), timeout=WAIT)
