"""alerts' wiring table.

| in                                                             | out / owns                                   |
|----------------------------------------------------------------|----------------------------------------------|
| usage.events.v1 (group spendstream-alerts, batches, NACK_ON_ERROR) | Redis: spend counters, fired markers      |
| alerts.budgets.v1 (replayed table; written by the API)          | alerts.fired.v1 (one record per alert)       |
| alerts.fired.v1 (group spendstream-alerts-delivery, NACK_ON_ERROR) | webhooks, e-mail; Redis: delivery log (30 d) |
| retention.commands.v1 (group spendstream-alerts-erasure)        | retention.reports.v1                         |
| ingest.apikeys.v1, ingest.datakeys.v1 (replayed tables)         |                                              |
| /v1/budgets (admin key)                                         |                                              |
| a sweep every `sweep_interval_seconds`: evaluate every budget; reconcile with rollup every
  `reconcile_interval_seconds` and for a budget that just changed                                                |
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from faststream import AckPolicy
from faststream.kafka import KafkaMessage
from pydantic import ValidationError

from spendstream.alerts import metrics
from spendstream.alerts.api import build_router
from spendstream.alerts.budgets import BudgetBook
from spendstream.alerts.consumer import SpendTracker
from spendstream.alerts.deliveries import Dispatcher
from spendstream.alerts.delivery_log import DeliveryLog
from spendstream.alerts.erasure import Eraser
from spendstream.alerts.keyspace import KeySpace
from spendstream.alerts.mail import MailSender
from spendstream.alerts.reconcile import Reconciler
from spendstream.alerts.settings import AlertsSettings
from spendstream.alerts.spend import SpendCounter
from spendstream.alerts.thresholds import Evaluator
from spendstream.alerts.webhooks import WebhookSender
from spendstream.common.connections import redis_client
from spendstream.common.erasure import DeletionCommand
from spendstream.common.http_auth import require_scope
from spendstream.common.kafka import make_broker, raw_body, tolerant_parser
from spendstream.common.prices import load as load_prices
from spendstream.common.records import BudgetRecord, FiredAlert
from spendstream.common.service import Service, cancel_and_wait
from spendstream.common.tenants import KeyDirectory, KeyRing
from spendstream.common.topics import ALERTS_FIRED, DELETION_COMMANDS, USAGE_EVENTS, topic_name

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_service(settings: AlertsSettings, clock: Callable[[], datetime] = _utcnow) -> Service:
    broker = make_broker(settings, "alerts")
    redis = redis_client(settings)
    keys = KeySpace(settings.redis_prefix, settings.kek_bytes())
    api_keys = KeyDirectory(settings)
    keyring = KeyRing(settings)
    http = httpx.AsyncClient(timeout=settings.webhook_timeout_seconds, follow_redirects=False)
    fired_topic = topic_name(ALERTS_FIRED, settings.topic_prefix)
    prefix = settings.topic_prefix

    dirty: set[str] = set()
    wake = asyncio.Event()

    def budget_changed(budget_id: str, _: BudgetRecord | None) -> None:
        dirty.add(budget_id)
        wake.set()

    book = BudgetBook(settings, broker, on_change=budget_changed)
    # The same table rollup prices with (a refreshed copy under data_dir first), so both agree on computed costs.
    counter = SpendCounter(redis, keys, load_prices(settings.data_dir), settings.counted_offsets_ttl_days * 86400)

    async def publish(alert: FiredAlert) -> None:
        # Keyed by budget: one budget's alerts stay in order for the delivery consumer.
        await broker.publish(alert.model_dump_json().encode(), fired_topic, key=alert.budget_id.encode())
        metrics.ALERTS_FIRED.labels(alert.kind).inc()

    evaluator = Evaluator(
        redis,
        keys,
        counter,
        publish,
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
    eraser = Eraser(redis, keys, book, broker, prefix)

    @broker.subscriber(
        topic_name(USAGE_EVENTS, prefix),
        group_id=f"{prefix}{settings.group_id}",
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset="earliest",
        parser=tolerant_parser,
        decoder=raw_body,
        # Offsets are committed after counting and publishing; a failure seeks back (counting is idempotent).
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_usage_events(msg: KafkaMessage) -> None:
        await tracker.handle(msg.raw_message)

    @broker.subscriber(
        fired_topic,
        group_id=f"{prefix}{settings.delivery_group_id}",
        auto_offset_reset="earliest",
        parser=tolerant_parser,
        decoder=raw_body,
        # Committed once every channel is delivered or dead-lettered; retries may take minutes. One worker per
        # partition: a receiver that is down holds back only the alerts behind it on its own partition.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_poll_interval_ms=900_000,
        max_workers=ALERTS_FIRED.partitions,
    )
    async def on_fired(msg: KafkaMessage) -> None:
        try:
            alert = FiredAlert.model_validate_json(msg.body)
        except ValidationError:
            log.error("skipping unparsable alert record")
            return
        await dispatcher.handle(alert)

    @broker.subscriber(
        topic_name(DELETION_COMMANDS, prefix),
        group_id=f"{prefix}{settings.erasure_group_id}",
        auto_offset_reset="earliest",
        parser=tolerant_parser,
        decoder=raw_body,
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_deletion_command(msg: KafkaMessage) -> None:
        try:
            command = DeletionCommand.model_validate_json(msg.body)
        except ValidationError:
            log.error("skipping unparsable deletion command")
            return
        await eraser.handle(command)

    async def forget(budget: BudgetRecord) -> None:
        """A deleted budget's markers and delivery log go with it."""
        found = [
            k
            async for k in redis.scan_iter(
                match=keys.budget_pattern(budget.workspace_id, budget.budget_id), count=10_000
            )
        ]
        if found:
            await redis.delete(*found)

    async def sweep_forever() -> None:
        loop = asyncio.get_running_loop()
        last_reconcile = float("-inf")
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.sweep_interval_seconds):
                    await wake.wait()
            wake.clear()
            changed = set(dirty)
            dirty.clear()
            reconcile_all = loop.time() - last_reconcile >= settings.reconcile_interval_seconds
            now = clock()
            try:
                for budget in book.all():
                    if reconciler.enabled and (reconcile_all or budget.budget_id in changed):
                        await reconciler.budget(budget, now)
                    await evaluator.evaluate(budget, now)
            except Exception as exc:  # the sweep is a safety net; it must outlive a Redis or Kafka blip
                log.warning("sweep failed", extra={"error": type(exc).__name__})
                continue
            if reconcile_all:
                last_reconcile = loop.time()

    state: dict[str, object] = {"ready": False, "sweeper": None}

    async def start() -> None:
        await api_keys.table.start()
        await keyring.table.start()
        await broker.start()
        await book.table.start()
        state["sweeper"] = asyncio.create_task(sweep_forever(), name="alerts-sweep")
        state["ready"] = True

    async def stop() -> None:
        state["ready"] = False
        sweeper = state["sweeper"]
        await cancel_and_wait(sweeper if isinstance(sweeper, asyncio.Task) else None)
        await broker.stop()
        await book.table.stop()
        await keyring.table.stop()
        await api_keys.table.stop()
        await http.aclose()
        await redis.aclose()

    router = build_router(
        book,
        delivery_log,
        require_scope(api_keys, "admin"),
        allow_private=settings.webhook_allow_private,
        rearm=evaluator.rearm,
        forget=forget,
    )
    return Service("alerts", routers=[router], start=start, stop=stop, ready=lambda: bool(state["ready"]))
