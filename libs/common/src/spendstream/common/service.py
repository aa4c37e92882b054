"""The shape every service shares: a router plus start/stop/ready, served with health and metrics endpoints.

`spendstream run SERVICE` serves one of them; `spendstream up` serves all four in one process (monolithic mode).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any] | None, grace_seconds: float = 10.0) -> None:
    """End a background loop: cancel it, and keep cancelling every 100 ms until it has ended.

    One cancel() is not enough: a CancelledError can be swallowed on its way out (Python 3.11's
    `asyncio.timeout` turns it into the TimeoutError of its own expiry when both land together, and the loop
    then goes round again), and a bare `await task` after that waits forever: a service that never stops,
    a pod held until SIGKILL. Re-delivering the cancellation ends the loop at its next await. After
    `grace_seconds` the task is left behind with an error logged rather than holding shutdown hostage.
    """
    if task is None or task.done():
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_seconds
    while not task.done():
        if loop.time() >= deadline:
            log.error("background task did not end on cancellation", extra={"task": task.get_name()})
            return
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled() and task.exception() is not None:
        log.warning(
            "background task had failed before it was stopped",
            extra={"task": task.get_name(), "error": type(task.exception()).__name__},
        )


async def _nothing() -> None:
    return None


@dataclass
class Service:
    name: str
    routers: list[object] = field(default_factory=list)  # fastapi.APIRouter
    start: Callable[[], Awaitable[None]] = _nothing
    stop: Callable[[], Awaitable[None]] = _nothing
    ready: Callable[[], bool] = lambda: True


def build_http_app(services: Sequence[Service], title: str = "spendstream") -> FastAPI:
    """One ASGI app: every service's routes, `/healthz`, `/readyz`, `/metrics`, lifespan in order."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        started: list[Service] = []
        try:
            for service in services:
                await service.start()
                started.append(service)
                log.info("service started", extra={"service": service.name})
            yield
        finally:
            # Stop in reverse: a consumer finishes and commits its batch before the things it writes to close.
            for service in reversed(started):
                try:
                    await service.stop()
                except Exception:
                    log.exception("service failed to stop cleanly", extra={"service": service.name})

    app = FastAPI(title=title, version="1.0.0", lifespan=lifespan)
    for service in services:
        for router in service.routers:
            app.include_router(router)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Never echo the input back: only where and what kind of error.
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "code": e["type"]} for e in exc.errors()]
        return JSONResponse({"error": "invalid_request", "details": errors}, status_code=422)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        not_ready = [s.name for s in services if not s.ready()]
        if not_ready:
            return JSONResponse({"status": "not ready", "services": not_ready}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


# Allocations between two young-generation collections (CPython's default is 700).
GC_GEN0_THRESHOLD = 100_000


def tune_gc() -> None:
    """Make CPython's cycle collector cheap for batch work.

    A batch of tens of thousands of events allocates millions of objects (dicts, Decimals, datetimes, row
    tuples), almost none in reference cycles: reference counting frees them. With the default thresholds the
    collector still ran every 700 allocations and kept walking the whole live batch, about a third of
    rollup's decoding time (bench.rollup_micro-style timing of 66,500 events: 1,093-1,358 ms with the
    defaults, 652-756 ms with this). What is alive after the imports is frozen out of every collection, and
    young collections happen every GC_GEN0_THRESHOLD allocations; cycles are still collected.
    """
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)


def serve(app: FastAPI, host: str, port: int, drain_seconds: int = 30) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests and stop the services."""
    tune_gc()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=drain_seconds,
        lifespan="on",
    )
    # uvloop when it is installed (ingest depends on it, with httptools, which uvicorn then picks by itself):
    # asyncio's own loop and h11 were a third of ingest's CPU at full load. Server.serve, unlike Server.run,
    # leaves the choice of loop to the caller.
    with asyncio.Runner(loop_factory=_uvloop_factory()) as runner:
        runner.run(uvicorn.Server(config).serve())


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
