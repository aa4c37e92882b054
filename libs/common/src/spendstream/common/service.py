"""The shape every service shares: routes, start/stop steps, periodic work and readiness, served with health
and metrics endpoints.

`python -m spendstream.SERVICE` (`entrypoint`) and `spendstream run SERVICE` serve one of them; `spendstream up`
serves all six in one process (monolithic mode).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from spendstream.common import errors, logs
from spendstream.common.http_auth import document_permissions
from spendstream.common.kek_check import verify_kek
from spendstream.common.settings import BaseServiceSettings, ConfigurationError, check

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


Step = Callable[[], object]  # a start or stop step; awaited when it returns an awaitable
Work = Callable[[], Awaitable[object]]


async def _run(step: Step) -> None:
    result = step()
    if inspect.isawaitable(result):
        await result


async def periodic(
    name: str, interval: float, work: Work, *, immediately: bool = False, wake: asyncio.Event | None = None
) -> None:
    """Run `work` every `interval` seconds (or as soon as `wake` is set) until cancelled.

    A failed round is logged by its exception's type alone (an error message may quote data) and the next
    round runs on time: background work is a safety net or an upkeep that must outlive a passing failure.
    """
    if wake is not None:
        wake.clear()  # what was signalled before the loop ran is covered by its first round
    if not immediately:
        await _pause(interval, wake)
    while True:
        try:
            await work()
        except Exception as exc:
            log.warning("periodic work failed", extra={"task": name, "error": type(exc).__name__})
        await _pause(interval, wake)


async def _pause(interval: float, wake: asyncio.Event | None) -> None:
    if wake is None:
        await asyncio.sleep(interval)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(interval):
            await wake.wait()
    wake.clear()


@dataclass(frozen=True, slots=True)
class _Loop:
    name: str
    interval: float
    work: Work
    immediately: bool
    wake: asyncio.Event | None


class Service:
    """One service: its routes, its start and stop steps (run in order), its periodic work and its readiness.

    Ready once every start step has returned and its loops run; not ready from the first moment of `stop`.
    """

    def __init__(self, name: str, routers: Sequence[object] = ()) -> None:
        self.name = name
        self.routers: list[object] = list(routers)  # fastapi.APIRouter
        self._starts: list[Step] = []
        self._stops: list[Step] = []
        self._loops: list[_Loop] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = False

    def on_start(self, *steps: Step) -> None:
        self._starts.extend(steps)

    def on_stop(self, *steps: Step) -> None:
        self._stops.extend(steps)

    def every(
        self, name: str, interval: float, work: Work, *, immediately: bool = False, wake: asyncio.Event | None = None
    ) -> None:
        """Run `work` periodically (see `periodic`) from the end of `start` until `stop`."""
        self._loops.append(_Loop(name, interval, work, immediately, wake))

    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        for step in self._starts:
            await _run(step)
        for loop in self._loops:
            coroutine = periodic(loop.name, loop.interval, loop.work, immediately=loop.immediately, wake=loop.wake)
            self._tasks.append(asyncio.create_task(coroutine, name=loop.name))
        self._ready = True

    async def stop(self) -> None:
        """Loops end first (none is mid-round against a closed client), then the stop steps in order."""
        self._ready = False
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks.clear()
        for step in self._stops:
            await _run(step)


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

    document_permissions(app.routes)
    errors.install(app)

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


def behind_proxies(app: ASGIApp, trusted_proxies: Sequence[str]) -> ASGIApp:
    """The app, believing X-Forwarded-For and X-Forwarded-Proto from the trusted proxies only (uvicorn's
    middleware: the client becomes the right-most forwarded address that is not itself a trusted proxy)."""
    if not trusted_proxies:
        return app
    # uvicorn types ASGI apps with its own (narrower) aliases; both describe the same callable.
    return cast(ASGIApp, ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=list(trusted_proxies)))


def serve(app: FastAPI, host: str, port: int, drain_seconds: int = 30, trusted_proxies: Sequence[str] = ()) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests and stop the services."""
    tune_gc()
    config = uvicorn.Config(
        behind_proxies(app, trusted_proxies),
        # Set explicitly: uvicorn's default believes the headers from 127.0.0.1 whatever the configuration says.
        proxy_headers=False,
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


S = TypeVar("S", bound=BaseServiceSettings)


def entrypoint(
    name: str, settings_type: type[S], create_service: Callable[[S], Service], argv: Sequence[str] | None = None
) -> int:
    """`python -m spendstream.<name> [--check]`: serve one service, or validate its configuration and exit.

    `--check` writes nothing (not even the KEK a first start generates); exit status 2 names what is invalid,
    a KEK that cannot unwrap a workspace's data key included (kek_check.py).
    """
    parser = argparse.ArgumentParser(prog=f"python -m spendstream.{name}", description=f"Run spendstream {name}.")
    parser.add_argument("--check", action="store_true", help="validate the configuration, write nothing, and exit")
    args = parser.parse_args(argv)
    try:
        settings = check(settings_type)
        verify_kek(settings)
    except ConfigurationError as exc:
        print("\n".join(f"{name}: {line}" for line in str(exc).splitlines()), file=sys.stderr)
        return 2
    if args.check:
        print(f"{name} configuration is valid")
        return 0
    logs.configure(settings.log_level)
    serve(
        build_http_app([create_service(settings)], title=f"spendstream {name}"),
        settings.http_host,
        settings.http_port,
        trusted_proxies=settings.trusted_proxies,
    )
    return 0
