"""Building blocks for tests of alerts' modules on the real Redis: budgets, events, counted records."""

from __future__ import annotations

import base64
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from spendstream.alerts.keyspace import KeySpace
from spendstream.alerts.spend import CountedRecord, SpendCounter
from spendstream.alerts.thresholds import Evaluator
from spendstream.common.events import UsageEvent
from spendstream.common.prices import bundled
from spendstream.common.records import BudgetRecord, BudgetScope, FiredAlert
from tests.support import Isolation

_offsets = itertools.count()


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


def event(cost: str | None, at: datetime, **overrides: Any) -> UsageEvent:
    values: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 1000,
        "output_tokens": 1000,
        "latency_ms": 1,
        "cost_usd": Decimal(cost) if cost is not None else None,
        "timestamp": at,
    }
    values.update(overrides)
    return UsageEvent(**values)


def record(workspace_id: str, *events: UsageEvent, partition: int = 0, offset: int | None = None) -> CountedRecord:
    return CountedRecord(workspace_id, "usage", partition, next(_offsets) if offset is None else offset, events)


@dataclass
class Rig:
    redis: aioredis.Redis
    keys: KeySpace
    counter: SpendCounter
    evaluator: Evaluator
    published: list[FiredAlert] = field(default_factory=list)
    fail_next_publish: bool = False
    crash_after_next_publish: bool = False

    async def spend(self, workspace_id: str, cost: str, at: datetime, scope: BudgetScope | None = None) -> None:
        tags = {scope.tag: scope.value} if scope else {}
        scopes = {workspace_id: {(scope.tag, scope.value)}} if scope else {}
        await self.counter.count([record(workspace_id, event(cost, at, tags=tags))], scopes)


@asynccontextmanager
async def rig(iso: Isolation, lease_seconds: float = 30.0, forecast_min_days: float = 3.0) -> AsyncIterator[Rig]:
    redis = aioredis.Redis.from_url(iso.stack.redis)
    keys = KeySpace(iso.prefix, base64.b64decode(iso.kek))
    counter = SpendCounter(redis, keys, bundled(), 35 * 24 * 3600)
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
        redis, keys, counter, publish, lease_seconds=lease_seconds, forecast_min_days=forecast_min_days
    )
    holder["rig"] = Rig(redis, keys, counter, evaluator, published)
    try:
        yield holder["rig"]
    finally:
        await redis.aclose()
