"""The delivery log: per alert, per channel, attempts and status - in Redis, kept 30 days.

Why Redis and not a topic: the log is read and updated per attempt by whichever replica delivers, must say at
once whether a channel was already served (so a redelivered alert record is not sent twice), and must vanish
on erasure; a Redis hash with a TTL does all three, and its TTL equals the retention of alerts.fired.v1, so a
replayed alert record always finds its log. Channels are named by ids (webhook id, keyed hash of the address),
never by URL or e-mail address.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import redis.asyncio as aioredis

from spendstream.alerts.keyspace import KeySpace

Status = Literal["pending", "retrying", "delivered", "dead_lettered"]
FINAL: tuple[Status, ...] = ("delivered", "dead_lettered")


class LoggedAlert(Protocol):
    """What the log needs of an alert: a budget's FiredAlert, or a data alert addressed to a budget's channels."""

    @property
    def workspace_id(self) -> str: ...
    @property
    def budget_id(self) -> str: ...
    @property
    def alert_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def period(self) -> str: ...
    @property
    def threshold_pct(self) -> int | None: ...
    @property
    def fired_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class ChannelState:
    status: Status
    attempts: int
    code: str | None
    updated_at: float


class DeliveryLog:
    def __init__(self, redis: aioredis.Redis, keys: KeySpace, keep_days: int) -> None:
        self._redis = redis
        self._keys = keys
        self._keep = keep_days * 24 * 3600

    async def open(self, alert: LoggedAlert) -> None:
        key = self._keys.delivery_log(alert.workspace_id, alert.budget_id, alert.alert_id)
        index = self._keys.delivery_index(alert.workspace_id, alert.budget_id)
        summary = {
            "kind": alert.kind,
            "period": alert.period,
            "threshold_pct": alert.threshold_pct,
            "fired_at": alert.fired_at.isoformat(),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "alert", json.dumps(summary))
            pipe.expire(key, self._keep)
            pipe.zadd(index, {alert.alert_id: alert.fired_at.timestamp()})
            pipe.zremrangebyscore(index, 0, time.time() - self._keep)
            pipe.expire(index, self._keep)
            await pipe.execute()

    async def state(self, alert: LoggedAlert, channel: str) -> ChannelState | None:
        raw = await self._redis.hget(
            self._keys.delivery_log(alert.workspace_id, alert.budget_id, alert.alert_id), channel
        )
        if raw is None:
            return None
        doc = json.loads(raw)
        return ChannelState(doc["status"], doc["attempts"], doc.get("code"), doc["updated_at"])

    async def record(self, alert: LoggedAlert, channel: str, state: ChannelState) -> None:
        key = self._keys.delivery_log(alert.workspace_id, alert.budget_id, alert.alert_id)
        doc = {"status": state.status, "attempts": state.attempts, "code": state.code, "updated_at": state.updated_at}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, channel, json.dumps(doc))
            pipe.expire(key, self._keep)
            await pipe.execute()

    async def of_budget(self, workspace_id: str, budget_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest alerts of a budget with each channel's delivery state."""
        ids = await self._redis.zrevrange(self._keys.delivery_index(workspace_id, budget_id), 0, limit - 1)
        out: list[dict[str, Any]] = []
        for raw_id in ids:
            alert_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            fields = await self._redis.hgetall(self._keys.delivery_log(workspace_id, budget_id, alert_id))
            if not fields:
                continue
            doc = {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in fields.items()}
            alert = doc.pop("alert", {})
            out.append({"alert_id": alert_id, **alert, "channels": doc})
        return out
