"""The ASGI application: every channel mounted over one runtime."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from types import FrameType
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from openmvno import __version__
from openmvno.channels import json_limits, middleware, security_headers
from openmvno.channels.api import auth, health
from openmvno.channels.console import web as console_web
from openmvno.channels.portal import web as portal_web
from openmvno.config import Settings
from openmvno.runtime import Runtime, build_runtime
from openmvno.web import apidocs, problems

STATIC = Path(__file__).parent / "channels" / "portal" / "static"
SANDBOX_STATIC = Path(__file__).parent / "adapters" / "payments" / "static"


def _stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` the moment SIGTERM or SIGINT arrives, then let the server's own handler
    (uvicorn's) run as before. uvicorn calls the lifespan's shutdown only once it has
    closed its connections; until then the embedded worker would start another batch."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only (an app run in a thread: no server)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(stop.set)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:  # nobody else listens: the default action
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)

        signal.signal(sig, handler)


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    embedded_worker: bool = False,
) -> FastAPI:
    """Build the app; pass ``runtime`` to share one (tests), else one is built from settings.
    ``embedded_worker`` runs the outbox worker inside this process while it serves."""
    rt = runtime or build_runtime(settings or Settings())
    if embedded_worker:
        rt.extras["embedded_worker"] = True

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker_task: asyncio.Task[None] | None = None
        worker_stop = asyncio.Event()
        if rt.extras.get("embedded_worker"):
            from openmvno.worker.runner import run_forever

            worker_task = asyncio.create_task(run_forever(rt, worker_stop))
            _stop_on_signals(worker_stop)
        if runtime is None:  # a served process (tests share a runtime and skip this)
            # What start-up built (routes, models, SQL metadata) lives as long as the
            # process: keep it out of the collector's full passes, which otherwise paused
            # every request for ~110 ms each time.
            gc.collect()
            gc.freeze()
            # A usage batch makes ~100,000 short-lived objects (the records, their rows and
            # answers) and no cycles: at the default threshold (700) the collector ran
            # hundreds of times per batch, ~12 % of its CPU. Collect the young generation
            # every 50,000 allocations instead.
            gc.set_threshold(50_000, 20, 20)
        try:
            yield
        finally:
            if worker_task is not None:
                # Shutdown (uvicorn got SIGTERM/SIGINT): the worker finishes its batch in hand.
                worker_stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            if runtime is None:
                await rt.close()

    app = FastAPI(
        title="OpenMVNO",
        version=__version__,
        description="Back office of a prepaid mobile operator: plans, lines, balances, "
        "renewals, top-ups and payments. Errors are RFC 9457 problem details.",
        lifespan=lifespan,
        docs_url=None,  # web.apidocs serves /docs from the installed package (offline)
        redoc_url=None,
    )
    app.state.runtime = rt
    problems.install(app)
    apidocs.install(app)
    portal_web.install(app)
    console_web.install(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/console/static", StaticFiles(directory=console_web.STATIC), name="console-static")
    if rt.settings.payment_provider == "sandbox":
        app.mount("/sandbox/static", StaticFiles(directory=SANDBOX_STATIC), name="sandbox-static")
    app.include_router(health.router)
    _mount_extras(app, rt)  # first the API's reads, then the rest (see channels/routers)
    app.include_router(auth.router)
    app.add_middleware(json_limits.JsonDepthMiddleware)  # inside the body-size cap below
    app.add_middleware(
        middleware.RequestContextMiddleware,
        max_body=rt.settings.max_body_bytes,
        default_language=rt.settings.default_language,
        large_bodies={"/api/v1/usage": rt.settings.usage_max_body_bytes},
    )
    app.add_middleware(security_headers.SecurityHeadersMiddleware, settings=rt.settings)
    if rt.settings.trusted_proxies:
        # Outermost: the client address the log line and rate limits see is the real one,
        # taken from X-Forwarded-For only when the peer is a trusted proxy.
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=rt.settings.trusted_proxies)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (``openmvno serve --workers N``): settings from env."""
    from openmvno.commandline import read_settings, refusals, refuse
    from openmvno.logs import setup_logging

    settings = read_settings()
    problems = settings if isinstance(settings, list) else refusals(settings, serving=True)
    if problems:
        refuse(problems)
        raise SystemExit(2)
    assert isinstance(settings, Settings)
    setup_logging(json_lines=settings.log_json)
    return create_app(settings, embedded_worker=settings.embedded_worker)


def _mount_extras(app: FastAPI, rt: Runtime) -> None:
    """Routers added by the other domains (kept in one list as they arrive)."""
    from openmvno.channels import routers

    for router in routers.all_routers(rt):
        app.include_router(router)
