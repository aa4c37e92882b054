"""Per-workspace limits: a token bucket on events per second and a monthly event quota per plan.

Both live in Redis so every replica shares them, and both run as one Lua script each, so concurrent requests
on many replicas can never overshoot. The bucket refills from Redis' own clock (`TIME`), never a replica's.

When Redis cannot answer, the limiter fails open: Kafka, not Redis, decides whether an event is accepted, so
an outage never refuses or loses events that Kafka would take. Each replica then falls back to a local token
bucket with the same rate, which bounds abuse while shared state is unavailable; the quota counter misses the
events accepted meanwhile (it under-counts, never over-counts).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from spendstream.common.redis_keys import tenant_key
from spendstream.ingest import metrics

log = logging.getLogger(__name__)

# A quota counter is kept for three months after its month ends (PRODUCT: monthly counters, rolling 3 months).
QUOTA_KEEP_SECONDS = 92 * 24 * 3600

_BUCKET = """
local cap = tonumber(ARGV[1]); local rate = tonumber(ARGV[2]); local req = tonumber(ARGV[3])
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or cap; local ts = tonumber(b[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local ok = 0
if tokens >= req then tokens = tokens - req; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000) + 1000)
return {ok, tostring(tokens)}
"""

_QUOTA = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local inc = tonumber(ARGV[1]); local limit = tonumber(ARGV[2])
if limit >= 0 and cur + inc > limit then return {0, cur} end
local new = redis.call('INCRBY', KEYS[1], inc)
redis.call('EXPIREAT', KEYS[1], ARGV[3], 'NX')
return {1, new}
"""


class LimitExceeded(Exception):
    """The workspace is over its rate or its monthly quota; retry after `retry_after` seconds."""

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(code)
        self.code, self.message, self.retry_after = code, message, retry_after


@dataclass
class _LocalBucket:
    tokens: float
    at: float


@dataclass(frozen=True, slots=True)
class Reservation:
    """Events counted against the month's quota, to be given back if Kafka does not take them."""

    key: str | None
    events: int


def month_key(now: datetime) -> str:
    return now.strftime("%Y-%m")


def _next_month(now: datetime) -> datetime:
    return datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)


class Limiter:
    def __init__(self, redis: aioredis.Redis, prefix: str, rate_per_second: float, burst: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._rate = rate_per_second
        self._burst = burst
        self._bucket_script = redis.register_script(_BUCKET)
        self._quota_script = redis.register_script(_QUOTA)
        self._local: dict[str, _LocalBucket] = {}

    def bucket_key(self, workspace_id: str) -> str:
        return tenant_key(self._prefix, "ingest", "bucket", workspace_id)

    def quota_key(self, workspace_id: str, now: datetime) -> str:
        return tenant_key(self._prefix, "ingest", "quota", workspace_id, month_key(now))

    async def take(self, workspace_id: str, events: int) -> None:
        """Take `events` tokens from the workspace's bucket, or raise LimitExceeded."""
        try:
            ok, left = await self._bucket_script(
                keys=[self.bucket_key(workspace_id)], args=[self._burst, self._rate, events]
            )
            tokens = float(left)
        except (RedisError, OSError):
            metrics.LIMITER_UNAVAILABLE.labels("rate").inc()
            log.warning("rate limit falls back to the local bucket: redis unavailable")
            ok, tokens = self._take_local(workspace_id, events)
        if not int(ok):
            wait = max(1, math.ceil((events - tokens) / self._rate))
            raise LimitExceeded("rate_limited", "too many events per second for this workspace", wait)

    def _take_local(self, workspace_id: str, events: int) -> tuple[int, float]:
        now = time.monotonic()
        bucket = self._local.setdefault(workspace_id, _LocalBucket(float(self._burst), now))
        bucket.tokens = min(float(self._burst), bucket.tokens + (now - bucket.at) * self._rate)
        bucket.at = now
        if bucket.tokens >= events:
            bucket.tokens -= events
            return 1, bucket.tokens
        return 0, bucket.tokens

    async def reserve(self, workspace_id: str, events: int, quota: int, now: datetime) -> Reservation:
        """Count `events` against this month's quota (-1: unlimited) atomically, or raise LimitExceeded."""
        if quota < 0 or events == 0:
            return Reservation(None, 0)
        key = self.quota_key(workspace_id, now)
        expire_at = int(_next_month(now).timestamp()) + QUOTA_KEEP_SECONDS
        try:
            ok, _ = await self._quota_script(keys=[key], args=[events, quota, expire_at])
        except (RedisError, OSError):
            metrics.LIMITER_UNAVAILABLE.labels("quota").inc()
            log.warning("monthly quota not counted: redis unavailable")
            return Reservation(None, 0)
        if not int(ok):
            wait = max(1, math.ceil((_next_month(now) - now).total_seconds()))
            raise LimitExceeded("quota_exceeded", "the workspace's monthly event quota is used up", wait)
        return Reservation(key, events)

    async def release(self, reservation: Reservation) -> None:
        """Give back a reservation whose events Kafka did not take (best effort: over-counts if Redis fails)."""
        if reservation.key is None:
            return
        try:
            await self._redis.decrby(reservation.key, reservation.events)
        except (RedisError, OSError):
            log.warning("quota reservation not released: redis unavailable")
