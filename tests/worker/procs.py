"""Worker processes for tests: real ``openmvno worker`` subprocesses on the test's
database (SQLite file or PostgreSQL), started, signalled and waited for."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from openmvno.config import Settings

WAIT_SECONDS = 60.0
"""Generous upper bound for a subprocess to reach a point (never a measured timing)."""


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMVNO_")}
    env.update(
        OPENMVNO_ENVIRONMENT="development",
        OPENMVNO_DATABASE_URL=settings.database_url,
        OPENMVNO_DATA_DIR=str(settings.data_dir),
        OPENMVNO_SECRET_KEY=settings.secret_key.get_secret_value(),
        OPENMVNO_DEFAULT_LANGUAGE=settings.default_language,
        OPENMVNO_WORKER_POLL_SECONDS="0.05",
        OPENMVNO_LOG_JSON="false",
        OPENMVNO_DB_POOL_SIZE="3",
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return start_command(env, log, "worker", *args)


def start_command(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``openmvno <args>`` in its own session, output appended to ``log``."""
    handle = log.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-c", "from openmvno.cli import app; app()", *args],
            env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
    finally:
        handle.close()


def wait_until(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes] | None = None,
               log: Path | None = None) -> None:
    """Poll ``check`` until true; fail with the worker's log if it dies or never gets there."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited ({proc.returncode}) before {what}: "
                                 + (log.read_text() if log else ""))
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what}: " + (log.read_text() if log else ""))
        time.sleep(0.05)


async def until(check: Callable[[], object], what: str,
                proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """:func:`wait_until` for async tests: ``check`` may be a coroutine function."""
    import asyncio
    import inspect

    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited ({proc.returncode}) before {what}: "
                                 + _read(log))
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what}: " + _read(log))
        await asyncio.sleep(0.05)


def _read(log: Path | None) -> str:
    return log.read_text() if log else ""
