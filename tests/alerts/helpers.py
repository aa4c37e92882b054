"""Building blocks for tests of alerts' modules, on the real Redis or its in-memory stand-in: budgets, events,
counted records."""

from __future__ import annotations

import base64
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from spendstream.alerts.keyspace import KeySpace
from spendstream.alerts.reservations import RedisReservationStore, Reservations, ReservationStore
from spendstream.alerts.spend import CountedRecord, RedisSpendStore, SpendCounter, SpendStore
from spendstream.alerts.thresholds import Evaluator, MarkerStore, RedisMarkerStore
from spendstream.common.events import SealedEvent
from spendstream.common.prices import bundled
from spendstream.common.records import BudgetRecord, BudgetScope, FiredAlert
from tests.alerts.memory import MemoryStore
from tests.support import Isolation

_offsets = itertools.count()
MEMORY_PREFIX = "mem:"
MEMORY_KEK = bytes(32)
KeyLister = Callable[[], Awaitable[list[str]]]


def budget(
    workspace_id: str = "ws1", amount: str = "100", thresholds: tuple[int, ...] = (75, 90, 100), **overrides: Any
) -> BudgetRecord:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "budget_id": f"bud_{uuid.uuid4().hex[:8]}",
        "workspace_id": workspace_id,
        "name": "b",
        "amount_usd": Decimal(amount),
        "scope": None,
        "thresholds": thresholds,
        "webhooks": (),
        "emails": (),
        "forecast": False,
        "spike_multiple": None,
        "revision": 1,
        "created_at": now,
        "updated_at": now,
    }
    values.update(overrides)
    return BudgetRecord(**values)


def event(cost: str | None, at: datetime, **overrides: Any) -> SealedEvent:
    values: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 1000,
        "output_tokens": 1000,
        "cached_input_tokens": None,
        "reasoning_tokens": None,
        "latency_ms": 1,
        "cost_usd": str(Decimal(cost)) if cost is not None else None,
        "timestamp": at.astimezone(UTC),
        "tags": {},
    }
    values.update(overrides)
    return SealedEvent(**values)


def record(workspace_id: str, *events: SealedEvent, partition: int = 0, offset: int | None = None) -> CountedRecord:
    return CountedRecord(workspace_id, "usage", partition, next(_offsets) if offset is None else offset, events)


class Book:
    """Budgets by workspace, as BudgetBook replays them."""

    def __init__(self) -> None:
        self.budgets: list[BudgetRecord] = []

    def of_workspace(self, workspace_id: str) -> list[BudgetRecord]:
        return [b for b in self.budgets if b.workspace_id == workspace_id]


@dataclass
class Rig:
    keys: KeySpace
    counter: SpendCounter
    evaluator: Evaluator
    stored_keys: KeyLister
    reservations: Reservations
    book: Book
    published: list[FiredAlert] = field(default_factory=list)
    fail_next_publish: bool = False
    crash_after_next_publish: bool = False

    async def spend(self, workspace_id: str, cost: str, at: datetime, scope: BudgetScope | None = None) -> None:
        tags = {scope.tag: scope.value} if scope else {}
        scopes = {workspace_id: {(scope.tag, scope.value)}} if scope else {}
        await self.counter.count([record(workspace_id, event(cost, at, tags=tags))], scopes)


@asynccontextmanager
async def stores(
    backend: Isolation | None,
) -> AsyncIterator[tuple[SpendStore, MarkerStore, ReservationStore, KeySpace, KeyLister]]:
    """The Redis stores of an isolated test (`backend`), or with None the in-memory stand-in."""
    if backend is None:
        memory = MemoryStore()

        async def memory_keys() -> list[str]:
            return memory.keys()

        yield memory, memory, memory, KeySpace(MEMORY_PREFIX, MEMORY_KEK), memory_keys
        return
    redis = aioredis.Redis.from_url(backend.stack.redis)

    async def redis_keys() -> list[str]:
        return [k.decode() async for k in redis.scan_iter(match=f"{backend.prefix}*", count=10_000)]

    try:
        keys = KeySpace(backend.prefix, base64.b64decode(backend.kek))
        yield RedisSpendStore(redis), RedisMarkerStore(redis), RedisReservationStore(redis), keys, redis_keys
    finally:
        await redis.aclose()


@asynccontextmanager
async def rig(
    backend: Isolation | None, lease_seconds: float = 30.0, forecast_min_days: float = 3.0
) -> AsyncIterator[Rig]:
    async with stores(backend) as (spend_store, marker_store, reservation_store, keys, stored_keys):
        counter = SpendCounter(spend_store, keys, bundled(), 35 * 24 * 3600)
        published: list[FiredAlert] = []
        holder: dict[str, Rig] = {}

        async def publish(alert: FiredAlert) -> None:
            if holder["rig"].fail_next_publish:
                holder["rig"].fail_next_publish = False
                raise ConnectionError("broker gone")
            published.append(alert)
            if holder["rig"].crash_after_next_publish:
                holder["rig"].crash_after_next_publish = False
                raise SystemError("killed after the broker acknowledged")

        evaluator = Evaluator(
            marker_store, keys, counter, publish, lease_seconds=lease_seconds, forecast_min_days=forecast_min_days
        )
        book = Book()
        reservations = Reservations(reservation_store, keys, book)
        holder["rig"] = Rig(keys, counter, evaluator, stored_keys, reservations, book, published)
        yield holder["rig"]
