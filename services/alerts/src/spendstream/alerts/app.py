"""alerts' wiring table.

| in                                                             | out / owns                                   |
|----------------------------------------------------------------|----------------------------------------------|
| usage.events.v1 (group spendstream-alerts, batches, NACK_ON_ERROR) | Redis: spend counters, fired markers      |
| alerts.budgets.v1 (replayed table; written by the API)          | alerts.fired.v1 (one record per alert)       |
| alerts.fired.v1 (group spendstream-alerts-delivery, NACK_ON_ERROR) | webhooks, e-mail; Redis: delivery log (30 d) |
| rollup.alerts.v1 (group spendstream-alerts-delivery-data)       | the workspace's budget channels (data alerts)|
| retention.commands.v1 (group spendstream-alerts-erasure)        | retention.reports.v1                         |
| ingest.apikeys.v1, ingest.datakeys.v1 (replayed tables)         |                                              |
| pricing.versions.v1, pricing.rates.v1 (replayed: the price book) |                                              |
| /v1/budgets (admin key)                                         |                                              |
| /v1/reservations (ingest key)                                   | Redis: open reservations of hard budgets     |
| every `sweep_interval_seconds`, or when a budget changes: sweep.py                                             |
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from faststream import AckPolicy

from spendstream.alerts.api import build_router
from spendstream.alerts.budgets import BudgetBook
from spendstream.alerts.consumer import SpendTracker
from spendstream.alerts.deliveries import Dispatcher
from spendstream.alerts.delivery_log import DeliveryLog
from spendstream.alerts.erasure import Eraser
from spendstream.alerts.fired import AlertPublisher
from spendstream.alerts.keyspace import KeySpace
from spendstream.alerts.mail import MailSender
from spendstream.alerts.reconcile import Reconciler
from spendstream.alerts.redis_client import redis_client
from spendstream.alerts.reservations import RedisReservationStore, Reservations
from spendstream.alerts.reservations_api import build_router as build_reservations_router
from spendstream.alerts.settings import AlertsSettings
from spendstream.alerts.spend import RedisSpendStore, SpendCounter
from spendstream.alerts.sweep import ChangedBudgets, Sweep
from spendstream.alerts.thresholds import Evaluator, RedisMarkerStore
from spendstream.alerts.webhooks import WebhookSender
from spendstream.common.erasure_owner import serve_erasure
from spendstream.common.http_auth import service_access
from spendstream.common.kafka import RawBatch, Received, make_broker, subscribe, subscribe_batch
from spendstream.common.price_replica import ReplayedPriceBook
from spendstream.common.records import DataAlert, FiredAlert
from spendstream.common.service import Service
from spendstream.common.tenants import KeyDirectory, KeyRing
from spendstream.common.topics import ALERTS_FIRED, ROLLUP_ALERTS, USAGE_EVENTS


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_service(settings: AlertsSettings, clock: Callable[[], datetime] = _utcnow) -> Service:
    broker = make_broker(settings, "alerts")
    redis = redis_client(settings)
    keys = KeySpace(settings.redis_prefix, settings.kek_bytes())
    api_keys = KeyDirectory(settings)
    access, members = service_access(settings, "alerts", api_keys, broker, redis)
    keyring = KeyRing(settings)
    http = httpx.AsyncClient(timeout=settings.webhook_timeout_seconds, follow_redirects=False)
    prefix = settings.topic_prefix

    changes = ChangedBudgets()
    book = BudgetBook(settings, broker, on_change=changes)
    # The book rollup prices with (replayed from the same topics), so both agree on computed costs.
    pricing = ReplayedPriceBook(settings)
    counter = SpendCounter(RedisSpendStore(redis), keys, pricing.book, settings.counted_offsets_ttl_days * 86400)
    reservations = Reservations(RedisReservationStore(redis), keys, book)
    evaluator = Evaluator(
        RedisMarkerStore(redis),
        keys,
        counter,
        AlertPublisher(broker, prefix),
        lease_seconds=settings.claim_lease_seconds,
        forecast_min_days=settings.forecast_min_days,
    )
    tracker = SpendTracker(keyring, counter, evaluator, book, clock)
    delivery_log = DeliveryLog(redis, keys, settings.delivery_log_days)
    dispatcher = Dispatcher(
        settings,
        redis,
        keys,
        book,
        delivery_log,
        WebhookSender(http, settings.webhook_allow_private),
        MailSender(settings),
        acknowledge=lambda alert: evaluator.mark_sent(alert, clock()),
    )
    reconciler = Reconciler(http, settings.rollup_url, settings.internal_token.get_secret_value(), keys, counter)
    sweep = Sweep(book, evaluator, reconciler, changes, clock, settings.reconcile_interval_seconds)
    eraser = Eraser(redis, keys, book)

    async def on_usage_events(batch: RawBatch) -> None:
        await tracker.handle(batch.records)

    subscribe_batch(
        broker,
        USAGE_EVENTS,
        prefix=prefix,
        group=settings.group_id,
        handler=on_usage_events,
        # Offsets are committed after counting and publishing; a failure seeks back (counting is idempotent).
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
    )

    async def on_fired(alert: Received[FiredAlert]) -> None:
        await dispatcher.handle(alert.value)

    subscribe(
        broker,
        ALERTS_FIRED,
        prefix=prefix,
        group=settings.delivery_group_id,
        handler=on_fired,
        # Committed once every channel is delivered or dead-lettered; retries may take minutes. One worker per
        # partition: a receiver that is down holds back only the alerts behind it on its own partition.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_poll_interval_ms=900_000,
        max_workers=ALERTS_FIRED.partitions,
    )

    async def on_data_alert(alert: Received[DataAlert]) -> None:
        await dispatcher.handle_data(alert.value)

    subscribe(
        broker,
        ROLLUP_ALERTS,
        prefix=prefix,
        group=f"{settings.delivery_group_id}-data",
        handler=on_data_alert,
        # The record is the outbox, as for fired alerts: committed once every channel reached a final state.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_poll_interval_ms=900_000,
    )
    serve_erasure(broker, eraser, prefix)

    router = build_router(
        book,
        delivery_log,
        access,
        allow_private=settings.webhook_allow_private,
        rearm=evaluator.rearm,
        forget=eraser.forget,
        state=lambda budget: reservations.state(budget, clock()),
    )
    # Reservations are asked by the application about to make a call: a producer, hence the ingest key.
    reserving = build_reservations_router(
        reservations,
        pricing.book,
        access,
        ttl=min(settings.reservation_ttl_seconds, settings.reservation_max_ttl_seconds),
        max_ttl=settings.reservation_max_ttl_seconds,
    )
    service = Service("alerts", routers=[router, reserving])
    service.on_start(
        api_keys.table.start, members.start, keyring.table.start, pricing.start, broker.start, book.table.start
    )
    # The sweep is a safety net; it must outlive a Redis or Kafka blip (a failed round is logged, the next runs).
    service.every("alerts:sweep", settings.sweep_interval_seconds, sweep.run_once, wake=changes.wake)
    service.on_stop(
        broker.stop,
        book.table.stop,
        pricing.stop,
        keyring.table.stop,
        members.stop,
        api_keys.table.stop,
        http.aclose,
        redis.aclose,
    )
    return service
