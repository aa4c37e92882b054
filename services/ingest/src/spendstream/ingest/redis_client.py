"""ingest's Redis connection (deduplication and rate limits, both on the request path)."""

from __future__ import annotations

import redis.asyncio as aioredis

from spendstream.ingest.settings import IngestSettings


def redis_client(settings: IngestSettings) -> aioredis.Redis:
    # Short timeouts: a Redis outage must degrade a request, not hang it.
    return aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=10
    )
