"""retention's wiring table.

| in                                                    | out                                     |
|-------------------------------------------------------|-----------------------------------------|
| retention.lifecycle.v1 (replayed table: schedules)    | retention.requests.v1 (request state)   |
| retention.requests.v1 (replayed table: requests)      | retention.commands.v1 (to every owner)  |
| retention.reports.v1 (group spendstream-retention, NACK_ON_ERROR) | audit.receipts.v1 (receipts) |
| POST /v1/deletions, GET /v1/deletions[/{id}], GET /v1/retention (a key or a session) |            |
| GET /v1/deletions/{id}/receipt (X-Receipt-Token alone: outlives the erased workspace's keys) |   |
| the clock: Retention.tick every tick_seconds, and at once when a lifecycle record arrives |
| the compacted tenant topics (`shredding.py`), read from 0 | their latest tombstone again (rolls a segment) |
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis
from faststream import AckPolicy

from spendstream.common.erasure import DeletionReport
from spendstream.common.http_auth import service_access
from spendstream.common.kafka import Received, make_broker, subscribe
from spendstream.common.service import Service
from spendstream.common.tenants import KeyDirectory
from spendstream.common.topics import DELETION_REPORTS
from spendstream.retention.api import build_router
from spendstream.retention.clock import Clock, SystemClock
from spendstream.retention.saga import Coordinator
from spendstream.retention.schedules import Schedules
from spendstream.retention.settings import RetentionSettings
from spendstream.retention.ticks import Ticker


@dataclass(frozen=True)
class Retention:
    """The running parts, so tests (and the monolith) can tick the clock themselves."""

    settings: RetentionSettings
    clock: Clock
    coordinator: Coordinator
    schedules: Schedules
    ticker: Ticker
    service: Service

    async def tick(self) -> list[str]:
        return await self.ticker.tick()


def build(settings: RetentionSettings, clock: Clock | None = None) -> Retention:
    clock = clock or SystemClock()
    broker = make_broker(settings, "retention")
    keys = KeyDirectory(settings)
    # Members' sessions only: retention keeps nothing else in Redis.
    redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    access, members = service_access(settings, "retention", keys, broker, redis)
    coordinator = Coordinator(settings, broker, clock)
    # Set by every lifecycle record: a `deleted` workspace is due at once, not at the next tick.
    wake = asyncio.Event()
    schedules = Schedules(settings, on_change=lambda _, __: wake.set())
    ticker = Ticker(schedules, coordinator, clock)
    router = build_router(coordinator, clock, access, settings, schedules)
    service = Service("retention", routers=[router])

    async def on_report(report: Received[DeletionReport]) -> None:
        await coordinator.on_report(report.value)

    subscribe(
        broker,
        DELETION_REPORTS,
        prefix=settings.topic_prefix,
        group=settings.group_id,
        handler=on_report,
        # The offset is committed only after the report is written into its request (on_report returned).
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    # The broker connects first: the coordinator publishes while it resumes, before reports flow in.
    service.on_start(
        broker.connect, keys.table.start, members.start, schedules.table.start, coordinator.start, broker.start
    )
    service.every("retention:tick", settings.tick_seconds, ticker.tick, wake=wake)
    service.every("retention:compaction", settings.compaction_check_seconds, coordinator.recheck_compaction)
    service.on_stop(broker.stop, coordinator.stop, schedules.table.stop, members.stop, keys.table.stop, redis.aclose)
    return Retention(settings, clock, coordinator, schedules, ticker, service)


def create_service(settings: RetentionSettings, clock: Clock | None = None) -> Service:
    return build(settings, clock).service
