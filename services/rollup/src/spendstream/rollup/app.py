"""rollup's wiring table.

| in                                             | out / owns                               |
|------------------------------------------------|------------------------------------------|
| usage.events.v1 (group spendstream-rollup, batches, NACK_ON_ERROR) | ClickHouse usage_events, usage_daily |
| ingest.datakeys.v1, ingest.apikeys.v1 (replayed tables) | rollup.deadletter.v1            |
| GET /v1/usage (read or admin key)               |                                          |
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from faststream import AckPolicy
from faststream.kafka import KafkaMessage

from spendstream.common.connections import clickhouse_client
from spendstream.common.http_auth import require_scope
from spendstream.common.kafka import make_broker
from spendstream.common.service import Service
from spendstream.common.tenants import KeyDirectory, KeyRing
from spendstream.common.topics import USAGE_EVENTS, topic_name
from spendstream.rollup import metrics
from spendstream.rollup.api import build_router
from spendstream.rollup.consumer import BatchWriter
from spendstream.rollup.prices import bundled
from spendstream.rollup.schema import migrate
from spendstream.rollup.settings import RollupSettings
from spendstream.rollup.store import Store

log = logging.getLogger(__name__)


def create_service(settings: RollupSettings) -> Service:
    url = settings.resolved_clickhouse_url()
    if url.startswith("chdb://"):
        Path(url.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    # Two clients: chDB serialises calls per client, so reads never queue behind a large insert.
    writer_client = clickhouse_client(url)
    reader_client = clickhouse_client(url)
    migrate(writer_client, settings.clickhouse_database, settings.retention_months)
    writer_store = Store(writer_client, settings.clickhouse_database)
    reader_store = Store(reader_client, settings.clickhouse_database)

    broker = make_broker(settings, "rollup")
    keys = KeyDirectory(settings)
    keyring = KeyRing(settings)
    writer = BatchWriter(store=writer_store, keyring=keyring, prices=bundled(), broker=broker,
                         topic_prefix=settings.topic_prefix, retry_seconds=settings.write_retry_seconds)

    @broker.subscriber(
        topic_name(USAGE_EVENTS, settings.topic_prefix),
        group_id=f"{settings.topic_prefix}{settings.group_id}",
        batch=True, max_records=settings.batch_max_records, batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset="earliest",
        # Offsets are committed only after the handler returned, i.e. after ClickHouse stored the batch.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_poll_interval_ms=120_000,
    )
    async def on_usage_events(msg: KafkaMessage) -> None:
        await writer.handle(msg.raw_message)

    state: dict[str, object] = {"ready": False, "reconciler": None}

    async def reconcile_forever() -> None:
        while True:
            await asyncio.sleep(settings.reconcile_interval_seconds)
            today = datetime.now(UTC).date()
            try:
                fixed = await asyncio.to_thread(writer_store.reconcile,
                                                today - timedelta(days=settings.reconcile_days), today)
            except Exception as exc:
                log.warning("reconcile failed", extra={"error": type(exc).__name__})
                continue
            metrics.CORRECTIONS.inc(fixed)

    async def start() -> None:
        await keys.table.start()
        await keyring.table.start()
        await broker.start()
        state["reconciler"] = asyncio.create_task(reconcile_forever())
        state["ready"] = True

    async def stop() -> None:
        state["ready"] = False
        task = state["reconciler"]
        if isinstance(task, asyncio.Task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await broker.stop()  # finishes the batch in hand and commits it (graceful_timeout)
        await keyring.table.stop()
        await keys.table.stop()
        writer_client.close()
        reader_client.close()

    router = build_router(reader_store, require_scope(keys, "read", "admin"))
    return Service("rollup", routers=[router], start=start, stop=stop, ready=lambda: bool(state["ready"]))
