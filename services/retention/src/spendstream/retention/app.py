"""retention's wiring table.

| in                                                    | out                                     |
|-------------------------------------------------------|-----------------------------------------|
| retention.lifecycle.v1 (replayed table: schedules)    | retention.requests.v1 (request state)   |
| retention.requests.v1 (replayed table: requests)      | retention.commands.v1 (to every owner)  |
| retention.reports.v1 (group spendstream-retention, NACK_ON_ERROR) | audit.receipts.v1 (receipts) |
| POST /v1/deletions, GET /v1/deletions/{id} (admin key) |                                        |
| the clock (tick every tick_seconds)                   |                                         |
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from faststream import AckPolicy
from faststream.kafka import KafkaMessage
from pydantic import ValidationError

from spendstream.common.erasure import DeletionReport, DeletionRequest, LifecycleEvent
from spendstream.common.http_auth import require_scope
from spendstream.common.kafka import make_broker, raw_body, tolerant_parser
from spendstream.common.service import Service, cancel_and_wait
from spendstream.common.tenants import KeyDirectory
from spendstream.common.topics import DELETION_REPORTS, topic_name
from spendstream.retention.api import build_router
from spendstream.retention.clock import Clock, SystemClock
from spendstream.retention.saga import Coordinator
from spendstream.retention.schedules import Schedules
from spendstream.retention.settings import RetentionSettings

log = logging.getLogger(__name__)


@dataclass
class Retention:
    """The running parts, so tests (and the monolith) can tick the clock themselves."""

    settings: RetentionSettings
    clock: Clock
    coordinator: Coordinator
    schedules: Schedules
    service: Service
    _tick_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def tick(self) -> list[str]:
        """Turn due schedules into requests and chase overdue owners; returns the request ids it submitted."""
        async with self._tick_lock:
            submitted = []
            await self.schedules.table.catch_up()
            for schedule in self.schedules.due(self.clock.now()):
                if self.coordinator.get(schedule.request_id) is not None:
                    continue
                request = DeletionRequest(
                    request_id=schedule.request_id,
                    workspace_id=schedule.workspace_id,
                    origin="lifecycle",
                    requested_by=f"lifecycle:{schedule.cause}",
                    requested_at=self.clock.now(),
                )
                _, created = await self.coordinator.submit(request)
                if created:
                    submitted.append(schedule.request_id)
            await self.coordinator.tick()
            return submitted


def build(settings: RetentionSettings, clock: Clock | None = None) -> Retention:
    clock = clock or SystemClock()
    broker = make_broker(settings, "retention")
    keys = KeyDirectory(settings)
    coordinator = Coordinator(settings, broker, clock)
    state: dict[str, object] = {"ready": False, "ticker": None}
    pending: set[asyncio.Task[None]] = set()

    async def tick_logged() -> None:
        try:
            await retention.tick()
        except Exception as exc:  # the next tick retries; a tick must never end the loop
            log.warning("retention tick failed", extra={"error": type(exc).__name__})

    def lifecycle_changed(_: str, __: LifecycleEvent | None) -> None:
        # A `deleted` workspace is due at once: do not wait for the next tick.
        if state["ready"]:
            task = asyncio.get_running_loop().create_task(tick_logged())
            pending.add(task)
            task.add_done_callback(pending.discard)

    schedules = Schedules(settings, on_change=lifecycle_changed)

    @broker.subscriber(
        topic_name(DELETION_REPORTS, settings.topic_prefix),
        group_id=f"{settings.topic_prefix}{settings.group_id}",
        auto_offset_reset="earliest",
        parser=tolerant_parser,
        decoder=raw_body,
        # The offset is committed only after the report is written into its request (on_report returned).
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_report(msg: KafkaMessage) -> None:
        try:
            report = DeletionReport.model_validate_json(msg.body)
        except ValidationError:
            log.error("skipping unparsable deletion report")
            return
        await coordinator.on_report(report)

    async def tick_forever() -> None:
        while True:
            await asyncio.sleep(settings.tick_seconds)
            await tick_logged()

    async def start() -> None:
        await broker.connect()  # the coordinator publishes while it resumes, before reports flow in
        await keys.table.start()
        await schedules.table.start()
        await coordinator.start()
        await broker.start()
        state["ticker"] = asyncio.create_task(tick_forever(), name="retention:tick")
        state["ready"] = True

    async def stop() -> None:
        state["ready"] = False
        ticker = state["ticker"]
        await cancel_and_wait(ticker if isinstance(ticker, asyncio.Task) else None)
        await broker.stop()
        await coordinator.stop()
        await schedules.table.stop()
        await keys.table.stop()

    router = build_router(coordinator, clock, require_scope(keys, "admin"))
    service = Service("retention", routers=[router], start=start, stop=stop, ready=lambda: bool(state["ready"]))
    retention = Retention(settings=settings, clock=clock, coordinator=coordinator, schedules=schedules, service=service)
    return retention


def create_service(settings: RetentionSettings, clock: Clock | None = None) -> Service:
    return build(settings, clock).service
