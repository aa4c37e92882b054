"""ingest's wiring table: what it reads, what it writes, its routes and its lifespan.

| in                          | out                                   |
|-----------------------------|---------------------------------------|
| POST /v1/events (ingest key) | usage.events.v1 (encrypted envelope)  |
| ingest.apikeys/datakeys/workspaces.v1 (replayed tables) | —          |
"""

from __future__ import annotations

from datetime import timedelta

from spendstream.common.connections import redis_client
from spendstream.common.http_auth import require_scope
from spendstream.common.kafka import make_broker
from spendstream.common.service import Service
from spendstream.common.tenants import KeyDirectory, KeyRing
from spendstream.ingest.api import build_router
from spendstream.ingest.batches import BatchAcceptor
from spendstream.ingest.dedupe import Deduplicator
from spendstream.ingest.settings import IngestSettings


def create_service(settings: IngestSettings) -> Service:
    broker = make_broker(settings, "ingest")
    redis = redis_client(settings)
    keys = KeyDirectory(settings)
    keyring = KeyRing(settings)
    acceptor = BatchAcceptor(
        broker=broker, keyring=keyring,
        dedupe=Deduplicator(redis, settings.redis_prefix, settings.dedupe_window_hours * 3600),
        topic_prefix=settings.topic_prefix,
        max_age=timedelta(days=31 * settings.retention_months),
        publish_timeout=settings.publish_timeout_seconds,
    )
    state = {"ready": False}

    async def start() -> None:
        await broker.start()
        await keys.table.start()
        await keyring.table.start()
        state["ready"] = True

    async def stop() -> None:
        state["ready"] = False
        await keyring.table.stop()
        await keys.table.stop()
        await broker.stop()
        await redis.aclose()

    router = build_router(settings, acceptor, require_scope(keys, "ingest"))
    return Service("ingest", routers=[router], start=start, stop=stop, ready=lambda: state["ready"])
