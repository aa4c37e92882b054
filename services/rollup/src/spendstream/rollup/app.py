"""rollup's wiring table.

| in                                             | out / owns                               |
|------------------------------------------------|------------------------------------------|
| usage.events.v1 (group spendstream-rollup, batches, NACK_ON_ERROR) | ClickHouse usage_events, usage_daily |
| ingest.tallies.v1 (group spendstream-rollup-tallies, batches)  | ClickHouse ledger_* (ledger.py)          |
| every completeness_check_seconds: completeness.py              | rollup.alerts.v1, gap metric             |
| ingest.datakeys.v1, ingest.apikeys.v1 (replayed tables) | rollup.deadletter.v1            |
| pricing.versions.v1, pricing.rates.v1 (replayed tables) | pricing.versions.v1, pricing.rates.v1 |
| retention.commands.v1 (group spendstream-rollup-erasure)    | retention.reports.v1        |
| GET /v1/usage(/groupings), /v1/export, /v1/findings, /v1/completeness (read or admin key) | |
| /v1/prices/... (admin key; held tables: price admins)       |                            |
| POST/GET /v1/prices/recompute (admin key; internal twin) | usage_events, usage_daily, price_recompute_* |
| /v1/revenue*, /v1/stripe/endpoint (admin), GET /v1/margin (read) | ClickHouse revenue tables (revenue.py) |
| POST /v1/stripe/webhook/{workspace} (Stripe's signature)      | ClickHouse revenue, stripe_events        |
| every margin_check_seconds: margin_watch.py                   | rollup.alerts.v1 (margin alerts)         |
| connectors.usage.v1 (group spendstream-rollup-providers) | ClickHouse provider_usage, provider_days |
| connectors.config.v1 (replayed: tag mappings); GET /v1/reconciliation |                      |
| every drift_check_seconds: reconciliation.DriftWatch  | rollup.alerts.v1                         |
| audit.records.v1 (group spendstream-rollup-audit, batches) | ClickHouse audit_records, audit_heads (audit_log.py) |
| GET /v1/audit, /v1/audit/export, /v1/audit/verify (audit.read); internal twin of verify |              |
| every reconcile/repair interval: corrections.py; hourly: sweeper.py; daily with a prices URL: price_refresh.py |
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from pathlib import Path

import redis.asyncio as aioredis
from faststream import AckPolicy

from spendstream.common import crypto
from spendstream.common.erasure_owner import serve_erasure
from spendstream.common.http_auth import service_access
from spendstream.common.kafka import CompactedTable, Publisher, RawBatch, make_broker, subscribe_batch
from spendstream.common.price_replica import PricePublisher, ReplayedPriceBook, forget_rates
from spendstream.common.records import AuditRecord, ConnectorRecord, DataAlert, IngestTally, ProviderDay
from spendstream.common.service import Service
from spendstream.common.tenants import KeyDirectory, KeyRing
from spendstream.common.topics import (
    AUDIT_RECORDS,
    CONNECTORS_CONFIG,
    CONNECTORS_USAGE,
    INGEST_TALLIES,
    ROLLUP_ALERTS,
    USAGE_EVENTS,
)
from spendstream.rollup import metrics
from spendstream.rollup.api import build_router
from spendstream.rollup.audit_api import build_audit_router
from spendstream.rollup.audit_log import AuditLog
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.completeness import CompletenessWatch
from spendstream.rollup.consumer import BatchWriter
from spendstream.rollup.corrections import Corrections
from spendstream.rollup.erased import ErasedSubjects
from spendstream.rollup.erasure import RollupErasure
from spendstream.rollup.internal_api import build_internal_router
from spendstream.rollup.ledger import Ledger
from spendstream.rollup.margin import MarginQueries
from spendstream.rollup.margin_watch import MarginWatch
from spendstream.rollup.price_refresh import PriceRefresher
from spendstream.rollup.prices_api import build_prices_router
from spendstream.rollup.provider_figures import ProviderFigures
from spendstream.rollup.queries import UsageQueries
from spendstream.rollup.recompute import BookPricing, Repricer
from spendstream.rollup.recompute_api import build_recompute_router
from spendstream.rollup.recompute_jobs import RecomputeJobs
from spendstream.rollup.reconcile import Reconciler
from spendstream.rollup.reconciliation import DriftWatch, Reconciliation, scopes
from spendstream.rollup.reconciliation_api import build_reconciliation_router
from spendstream.rollup.revenue import RevenueStore
from spendstream.rollup.revenue_api import build_revenue_router
from spendstream.rollup.schema import migrate
from spendstream.rollup.settings import RollupSettings
from spendstream.rollup.stripe_webhook import StripeEndpoints, StripeWebhook
from spendstream.rollup.sweeper import Sweeper
from spendstream.rollup.writes import ClickHouseWriter

log = logging.getLogger(__name__)


def create_service(settings: RollupSettings) -> Service:
    url = settings.resolved_clickhouse_url()
    if url.startswith("chdb://"):
        Path(url.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    # Two clients: chDB serialises calls per client, so reads never queue behind a large insert.
    writer_client = clickhouse_client(url)
    reader_client = clickhouse_client(url)
    migrate(writer_client, settings.clickhouse_database, settings.retention_months, settings.audit_retention_months)
    queries = UsageQueries(reader_client, settings.clickhouse_database)

    broker = make_broker(settings, "rollup")
    keys = KeyDirectory(settings)
    # Members' sessions only (rollup keeps nothing else in Redis); short timeouts, like ingest's.
    redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    access, members = service_access(settings, "rollup", keys, broker, redis)
    keyring = KeyRing(settings)
    # The versions and rates every service prices with; rollup publishes refreshes and the API's changes.
    pricing = ReplayedPriceBook(settings)
    price_publisher = PricePublisher(broker, settings.topic_prefix)
    # Read at each scrape: a version held by the CLI or another replica counts as soon as it is replayed.
    metrics.PRICES_HELD.set_function(lambda: len(pricing.book.held()))
    erased = ErasedSubjects(writer_client, settings.clickhouse_database)
    ledger = Ledger(writer_client, settings.clickhouse_database)
    writer = BatchWriter(
        writer=ClickHouseWriter(writer_client, settings.clickhouse_database, pricing.book, ledger),
        repairs=Reconciler(writer_client, settings.clickhouse_database),
        keyring=keyring,
        broker=broker,
        topic_prefix=settings.topic_prefix,
        retry_seconds=settings.write_retry_seconds,
        erased=erased,
        chunk_records=settings.write_chunk_records,
        ledger=ledger,
    )

    async def on_usage_events(batch: RawBatch) -> None:
        await writer.handle(batch.records)
        await metrics.observe_lag(batch.consumer)

    subscribe_batch(
        broker,
        USAGE_EVENTS,
        prefix=settings.topic_prefix,
        group=settings.group_id,
        handler=on_usage_events,
        # Offsets are committed only after the handler returned, i.e. after ClickHouse stored the batch.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        max_partition_fetch_bytes=settings.fetch_max_partition_bytes,
        max_poll_interval_ms=120_000,
    )

    async def on_tallies(batch: RawBatch) -> None:
        tallies: list[IngestTally] = []
        for record in batch.records:
            try:
                tally = INGEST_TALLIES.record.decode(record.value or b"")
            except ValueError:  # not ingest's: logged by coordinates, never by content
                log.error("skipping a tally that does not parse", extra={"offset": record.offset})
                continue
            # A workspace whose data key is gone is erased (or never existed): its ledger is not written again.
            if keyring.current_version(tally.workspace_id) is None:
                await keyring.table.catch_up()  # or a key newer than this replica's replay
            if keyring.current_version(tally.workspace_id) is not None:
                tallies.append(tally)
        # Under the writer's lock, as every write: an erasure deletes the ledger while holding it.
        async with writer.lock:
            await asyncio.to_thread(ledger.record_tallies, tallies)

    subscribe_batch(
        broker,
        INGEST_TALLIES,
        prefix=settings.topic_prefix,
        group=f"{settings.group_id}-tallies",
        handler=on_tallies,
        # Committed after the insert; a redelivered tally writes the same row (keyed by batch id).
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_records=5000,
        batch_timeout_ms=settings.batch_timeout_ms,
    )
    chain_key = crypto.derived_key(settings.kek_bytes(), "audit-chain")
    audit_writer = AuditLog(writer_client, settings.clickhouse_database, chain_key, settings.audit_retention_months)

    async def on_audit_records(batch: RawBatch) -> None:
        records: list[AuditRecord] = []
        for record in batch.records:
            try:
                audit = AUDIT_RECORDS.record.decode(record.value or b"")
            except ValueError:  # no service publishes such a record: logged by coordinates, never by content
                log.error("skipping an audit record that does not parse", extra={"offset": record.offset})
                continue
            # An erased workspace's log is gone with it (erasure.py): a late record does not start a new chain.
            if audit.workspace_id and keyring.current_version(audit.workspace_id) is None:
                await keyring.table.catch_up()
            if audit.workspace_id and keyring.current_version(audit.workspace_id) is None:
                log.warning("dropping an audit record of a workspace without data key", extra={"offset": record.offset})
                continue
            records.append(audit)
        async with writer.lock:  # an erasure deletes while holding it
            await asyncio.to_thread(audit_writer.store, records)

    subscribe_batch(
        broker,
        AUDIT_RECORDS,
        prefix=settings.topic_prefix,
        group=f"{settings.group_id}-audit",
        handler=on_audit_records,
        # Committed after the records and their head are stored; a redelivered record is chained once.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_records=1000,
        batch_timeout_ms=settings.batch_timeout_ms,
    )
    alerts_out: Publisher[DataAlert] = Publisher(broker, ROLLUP_ALERTS, settings.topic_prefix)

    async def publish_alert(alert: DataAlert) -> None:
        await alerts_out.publish(alert, alert.workspace_id)

    # Reads with the reader's client: the watch never queues behind an insert.
    watch = CompletenessWatch(
        client=reader_client,
        database=settings.clickhouse_database,
        ledger=Ledger(reader_client, settings.clickhouse_database),
        publish=publish_alert,
        grace_seconds=settings.completeness_grace_seconds,
        days=settings.completeness_days,
    )
    erasure = RollupErasure(
        client=writer_client,
        settings=settings,
        keyring=keyring,
        writer_lock=writer.lock,
        erased=erased,
        ledger=ledger,
        forget_workspace=partial(forget_rates, pricing, price_publisher),
    )
    # An erasure waits for the usage consumer to drain and for mutations: minutes, not the default 5 minutes' poll.
    serve_erasure(broker, erasure, settings.topic_prefix, max_poll_interval_ms=600_000)

    # Only one process can open a chDB directory, so no other writer can be mid-insert there; on a server,
    # other replicas can, and drift is corrected only once seen twice (reconcile.py).
    corrections = Corrections(
        writer,
        recent_days=settings.reconcile_days,
        interval_seconds=settings.reconcile_interval_seconds,
        confirm_after=0.0 if url.startswith("chdb://") else 2.0,
    )
    sweeper = Sweeper(writer_client, settings.clickhouse_database, lock=writer.lock)

    figures = ProviderFigures(writer_client, settings.clickhouse_database)

    async def on_provider_days(batch: RawBatch) -> None:
        days: list[ProviderDay] = []
        for record in batch.records:
            try:
                days.append(CONNECTORS_USAGE.record.decode(record.value or b""))
            except ValueError:
                log.error("skipping a provider day that does not parse", extra={"offset": record.offset})
        if days:
            async with writer.lock:  # an erasure deletes while holding it
                await asyncio.to_thread(figures.store, days)

    subscribe_batch(
        broker,
        CONNECTORS_USAGE,
        prefix=settings.topic_prefix,
        group=f"{settings.group_id}-providers",
        handler=on_provider_days,
        ack_policy=AckPolicy.NACK_ON_ERROR,  # committed after the insert; a redelivered day replaces itself
        max_records=1000,
        batch_timeout_ms=settings.batch_timeout_ms,
    )
    connectors: CompactedTable[ConnectorRecord] = CompactedTable(settings, CONNECTORS_CONFIG)
    reader_figures = ProviderFigures(reader_client, settings.clickhouse_database)
    reconciliation = Reconciliation(
        reader_client, settings.clickhouse_database, reader_figures, settings.reconciliation_settle_seconds
    )
    drift = DriftWatch(
        client=reader_client,
        database=settings.clickhouse_database,
        reconciliation=reconciliation,
        figures=reader_figures,
        narrow=lambda ws: scopes(connectors.values(), ws),
        publish=publish_alert,
        threshold_pct=settings.drift_threshold_pct,
        days=settings.drift_days,
    )

    jobs = RecomputeJobs(
        Repricer(writer_client, settings.clickhouse_database), writer.lock, lambda: BookPricing(pricing.book)
    )

    router = build_router(queries, access, pricing.book, Ledger(reader_client, settings.clickhouse_database))
    # Revenue is written with the writer's client under its lock (an erasure deletes under it) and read with
    # the reader's, like usage.
    store = RevenueStore(writer_client, settings.clickhouse_database)
    margin = MarginQueries(reader_client, settings.clickhouse_database)
    stripe_endpoints = StripeEndpoints(writer_client, settings.clickhouse_database, keyring)
    webhook = StripeWebhook(
        stripe_endpoints,
        store,
        writer_client,
        settings.clickhouse_database,
        writer.lock,
        tolerance_seconds=settings.stripe_tolerance_seconds,
        erased=erased,
    )
    revenue_router = build_revenue_router(
        store,
        margin,
        stripe_endpoints,
        webhook,
        access=access,
        lock=writer.lock,
    )
    margin_watch = MarginWatch(queries=margin, raise_once=watch.raise_once, threshold_pct=settings.margin_alert_pct)
    reconciliation_router = build_reconciliation_router(
        reconciliation, access, lambda ws: scopes(connectors.values(), ws)
    )
    internal = build_internal_router(queries, settings.internal_token)
    prices_router = build_prices_router(pricing, price_publisher, access, settings.price_admins())
    recompute = build_recompute_router(jobs, access, settings.internal_token)
    audit_reader = AuditLog(reader_client, settings.clickhouse_database, chain_key, settings.audit_retention_months)
    audit = build_audit_router(audit_reader, access.require("audit.read"), settings.internal_token)
    service = Service(
        "rollup",
        routers=[router, revenue_router, reconciliation_router, internal, prices_router, recompute, audit],
    )
    # The book before the consumer: no event is priced before the versions and rates are replayed. Jobs a
    # previous process died under resume once the consumer runs (they share the writer lock).
    service.on_start(
        keys.table.start, members.start, keyring.table.start, pricing.start, connectors.start, broker.start, jobs.resume
    )
    if settings.prices_url:
        refresher = PriceRefresher(
            settings.prices_url, pricing, price_publisher, queries.models_in_use, settings.prices_in_use_days
        )
        service.every("rollup:prices", settings.prices_refresh_interval_seconds, refresher.run_once, immediately=True)
    service.every("rollup:drift", settings.drift_check_seconds, drift.run_once)
    service.every("rollup:reconcile", settings.reconcile_interval_seconds, corrections.reconcile)
    service.every("rollup:repair", settings.repair_interval_seconds, corrections.repair)
    service.every("rollup:completeness", settings.completeness_check_seconds, watch.run_once)
    service.every("rollup:margin", settings.margin_check_seconds, margin_watch.run_once)
    # The first sweep right away: a restarted service catches up at once.
    service.every("rollup:sweep", 3600.0, sweeper.run_once, immediately=True)
    # broker.stop finishes the batch in hand and commits it (graceful_timeout) before the clients close.
    service.on_stop(
        jobs.stop,
        broker.stop,
        pricing.stop,
        connectors.stop,
        keyring.table.stop,
        members.stop,
        keys.table.stop,
        redis.aclose,
        writer_client.close,
        reader_client.close,
    )
    return service
