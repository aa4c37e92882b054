"""rollup's wiring table.

| in                                             | out / owns                               |
|------------------------------------------------|------------------------------------------|
| usage.events.v1 (group spendstream-rollup, batches, NACK_ON_ERROR) | ClickHouse usage_events, usage_daily |
| ingest.datakeys.v1, ingest.apikeys.v1 (replayed tables) | rollup.deadletter.v1            |
| GET /v1/usage, /v1/export, /v1/findings (read or admin key) |                            |
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from faststream import AckPolicy
from faststream.kafka import KafkaMessage

from spendstream.common import prices as price_tables
from spendstream.common.http_auth import require_scope
from spendstream.common.kafka import make_broker, raw_body, tolerant_parser
from spendstream.common.service import Service, cancel_and_wait
from spendstream.common.tenants import KeyDirectory, KeyRing
from spendstream.common.topics import DELETION_COMMANDS, USAGE_EVENTS, topic_name
from spendstream.rollup import metrics
from spendstream.rollup.api import build_router
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.consumer import BatchWriter
from spendstream.rollup.erased import ErasedSubjects
from spendstream.rollup.erasure import RollupErasure
from spendstream.rollup.internal_api import build_internal_router
from spendstream.rollup.queries import UsageQueries
from spendstream.rollup.reconcile import Reconciler
from spendstream.rollup.schema import migrate
from spendstream.rollup.settings import RollupSettings
from spendstream.rollup.writes import ClickHouseWriter

log = logging.getLogger(__name__)


def create_service(settings: RollupSettings) -> Service:
    url = settings.resolved_clickhouse_url()
    if url.startswith("chdb://"):
        Path(url.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    # Two clients: chDB serialises calls per client, so reads never queue behind a large insert.
    writer_client = clickhouse_client(url)
    reader_client = clickhouse_client(url)
    migrate(writer_client, settings.clickhouse_database, settings.retention_months)
    queries = UsageQueries(reader_client, settings.clickhouse_database)

    broker = make_broker(settings, "rollup")
    keys = KeyDirectory(settings)
    keyring = KeyRing(settings)
    prices = price_tables.load(settings.data_dir)
    log.info("price table loaded", extra={"source": prices.source, "models": len(prices)})
    erased = ErasedSubjects(writer_client, settings.clickhouse_database)
    writer = BatchWriter(
        writer=ClickHouseWriter(writer_client, settings.clickhouse_database, prices),
        repairs=Reconciler(writer_client, settings.clickhouse_database),
        keyring=keyring,
        broker=broker,
        topic_prefix=settings.topic_prefix,
        retry_seconds=settings.write_retry_seconds,
        erased=erased,
        chunk_records=settings.write_chunk_records,
    )

    @broker.subscriber(
        topic_name(USAGE_EVENTS, settings.topic_prefix),
        group_id=f"{settings.topic_prefix}{settings.group_id}",
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        max_partition_fetch_bytes=settings.fetch_max_partition_bytes,
        auto_offset_reset="earliest",
        parser=tolerant_parser,
        decoder=raw_body,
        # Offsets are committed only after the handler returned, i.e. after ClickHouse stored the batch.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_poll_interval_ms=120_000,
    )
    async def on_usage_events(msg: KafkaMessage) -> None:
        await writer.handle(msg.raw_message)
        await metrics.observe_lag(msg.consumer)

    erasure = RollupErasure(
        client=writer_client, settings=settings, keyring=keyring, broker=broker, writer_lock=writer.lock, erased=erased
    )

    @broker.subscriber(
        topic_name(DELETION_COMMANDS, settings.topic_prefix),
        group_id=f"{settings.topic_prefix}spendstream-rollup-erasure",
        auto_offset_reset="earliest",
        parser=tolerant_parser,
        decoder=raw_body,
        # Committed after the report is published: a crash in between repeats the (idempotent) command.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_poll_interval_ms=600_000,
    )
    async def on_deletion_command(msg: KafkaMessage) -> None:
        await erasure.handle(msg.body)

    state: dict[str, object] = {"ready": False, "reconciler": None, "repairer": None}

    # Only one process can open a chDB directory, so no other writer can be mid-insert there; on a server,
    # other replicas can, and drift is corrected only once seen twice (reconcile.py).
    confirm_after = 0.0 if url.startswith("chdb://") else 2.0

    async def reconcile_forever() -> None:
        since = datetime.now(UTC) - timedelta(days=settings.reconcile_days)
        while True:
            await asyncio.sleep(settings.reconcile_interval_seconds)
            # Overlapping windows: rows stored just before the previous run are looked at again.
            started = datetime.now(UTC) - timedelta(seconds=settings.reconcile_interval_seconds)
            try:
                fixed = await writer.reconcile(since, started.date(), settings.reconcile_days, confirm_after)
            except Exception as exc:  # a failed pass is retried next interval; the consumer must go on
                log.warning("reconcile failed", extra={"error": type(exc).__name__})
                continue
            since = started
            metrics.CORRECTIONS.inc(fixed)

    async def repair_forever() -> None:
        while True:
            await asyncio.sleep(settings.repair_interval_seconds)
            try:
                fixed = await writer.repair(confirm_after)
            except Exception as exc:  # the suspect days stay marked; retried next interval
                log.warning("repair failed", extra={"error": type(exc).__name__})
                continue
            if fixed:
                log.warning("rollup repaired from the raw table after a redelivery", extra={"groups": fixed})
            metrics.CORRECTIONS.inc(fixed)

    async def start() -> None:
        await keys.table.start()
        await keyring.table.start()
        await broker.start()
        erasure.start()
        state["reconciler"] = asyncio.create_task(reconcile_forever())
        state["repairer"] = asyncio.create_task(repair_forever())
        state["ready"] = True

    async def stop() -> None:
        state["ready"] = False
        for name in ("reconciler", "repairer"):
            task = state[name]
            await cancel_and_wait(task if isinstance(task, asyncio.Task) else None)
        await erasure.stop()
        await broker.stop()  # finishes the batch in hand and commits it (graceful_timeout)
        await keyring.table.stop()
        await keys.table.stop()
        writer_client.close()
        reader_client.close()

    router = build_router(queries, require_scope(keys, "read", "admin"), prices)
    internal = build_internal_router(queries, settings.internal_token)
    return Service("rollup", routers=[router, internal], start=start, stop=stop, ready=lambda: bool(state["ready"]))
