"""Idempotency: an event_id seen inside the window is a duplicate, not a second event.

Ids are *checked* before publishing and *marked* only after Kafka acknowledged the batch, so a failed publish
never swallows the client's retry (openmeter #5118 claimed the key first and lost retried events).
Redis is an optimisation here, not the guarantee: if it is down, events pass as new and rollup's
ClickHouse-side dedupe still stores each (workspace, event_id) once.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from spendstream.common.redis_keys import tenant_key

log = logging.getLogger(__name__)


class Deduplicator:
    def __init__(self, redis: aioredis.Redis, prefix: str, window_seconds: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._window = window_seconds

    def _key(self, workspace_id: str, event_id: str) -> str:
        return tenant_key(self._prefix, "ingest", "seen", workspace_id, event_id)

    async def seen(self, workspace_id: str, event_ids: list[str]) -> set[str]:
        """The ids already marked; empty when Redis cannot answer (downstream dedupe takes over)."""
        if not event_ids:
            return set()
        try:
            flags = await self._redis.mget([self._key(workspace_id, e) for e in event_ids])
        except (RedisError, OSError):
            log.warning("dedupe check skipped: redis unavailable")
            return set()
        return {e for e, flag in zip(event_ids, flags, strict=True) if flag is not None}

    async def mark(self, workspace_id: str, event_ids: list[str]) -> None:
        """Mark ids as seen for the window; called only after the broker acknowledged them."""
        if not event_ids:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for event_id in event_ids:
                pipe.set(self._key(workspace_id, event_id), b"1", ex=self._window)
            await pipe.execute()
        except (RedisError, OSError):
            log.warning("dedupe mark skipped: redis unavailable")
