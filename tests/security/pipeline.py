"""The services in one process (as `spendstream up` runs them) on a test's isolated topics, and what the
security tests need around them: every route of every service's FastAPI app, and consumer-group positions."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI
from fastapi.routing import APIRoute

from spendstream.alerts.app import create_service as create_alerts
from spendstream.alerts.settings import AlertsSettings
from spendstream.common.service import Service, build_http_app
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.people.app import create_service as create_people
from spendstream.people.settings import PeopleSettings
from spendstream.retention.app import Retention
from spendstream.retention.app import build as build_retention
from spendstream.retention.settings import RetentionSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.settings import RollupSettings
from tests.support import Isolation, free_port

_MAIL_SINK: list[int] = []


class _Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        return "250 OK"


def mail_sink_port() -> int:
    """A local SMTP server (aiosmtpd) that accepts and drops every message: people's invitations go somewhere."""
    if not _MAIL_SINK:
        from aiosmtpd.controller import Controller

        port = free_port()
        Controller(_Discard(), hostname="127.0.0.1", port=port).start()  # a daemon thread, for the session
        _MAIL_SINK.append(port)
    return _MAIL_SINK[0]


INTERNAL_TOKEN = "internal-token-of-the-security-tests"


@dataclass
class Pipeline:
    client: httpx.AsyncClient
    app: FastAPI
    retention: Retention


def services(iso: Isolation) -> tuple[list[Service], Retention]:
    # These suites send hundreds of forged and erased keys from one address on purpose, to see each refused
    # with 401; the brake on guessing (429) has tests of its own (tests/ingest, tests/retention test_api.py).
    unbraked = {"auth_failures_per_address": 1_000_000, "auth_failures_per_key_prefix": 1_000_000}
    common: dict[str, Any] = {"internal_token": INTERNAL_TOKEN, **unbraked}
    retention = build_retention(iso.settings(RetentionSettings, tick_seconds=0.5, **common))
    return [
        create_ingest(iso.settings(IngestSettings, **common)),
        create_rollup(iso.settings(RollupSettings, batch_timeout_ms=50, **common)),
        create_alerts(iso.settings(AlertsSettings, rollup_url="", webhook_allow_private=True, **common)),
        create_people(
            iso.settings(
                PeopleSettings,
                smtp_host="127.0.0.1",
                smtp_port=mail_sink_port(),
                smtp_starttls=False,
                password_memory_kib=8192,
                password_time_cost=1,
                password_parallelism=1,
                **common,
            )
        ),
        retention.service,
    ], retention


@asynccontextmanager
async def running(iso: Isolation, client: tuple[str, int] = ("127.0.0.1", 123)) -> AsyncIterator[Pipeline]:
    """All four services started in this event loop, with an HTTP client bound to their ASGI app (requests
    come from the `client` address)."""
    parts, retention = services(iso)
    app = build_http_app(parts)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://spendstream.test") as http:
            yield Pipeline(http, app, retention)


@dataclass(frozen=True)
class Endpoint:
    path: str
    methods: frozenset[str]


def api_routes(app: FastAPI) -> list[Endpoint]:
    """Every API route of the app, included routers' too (FastAPI >= 0.16x wraps those in an included-router
    node, whose prefix is applied here). Health, readiness and metrics are excluded: they take no key."""
    found: list[Endpoint] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            original = getattr(route, "original_router", None)
            if original is not None:
                walk(list(original.routes), prefix + route.include_context.prefix)
            elif isinstance(route, APIRoute) and route.path not in ("/healthz", "/readyz", "/metrics"):
                found.append(Endpoint(prefix + route.path, frozenset(route.methods or ())))

    walk(list(app.routes), "")
    return found


def concrete(path: str) -> str:
    """A path template with every parameter filled in by a plausible id."""
    out = path
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        out = out[:start] + "id_0123456789" + out[end + 1 :]
    return out


async def lag(bootstrap: str, group: str, topic: str) -> int:
    """Records on `topic` the consumer group has not committed past (every partition; uncommitted = 0)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        total = 0
        for tp in partitions:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else 0
            total += max(0, ends[tp] - position)
        return total
    finally:
        await admin.close()


@contextmanager
def live(iso: Isolation) -> Iterator[tuple[str, FastAPI]]:
    """The four services behind a real uvicorn (its own thread and event loop): for CLIs and raw sockets."""
    app = build_http_app(services(iso)[0])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="spendstream-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 90
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the services did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=60)
