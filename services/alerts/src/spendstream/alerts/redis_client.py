"""alerts' Redis connection (spend counters, fired markers, the delivery log)."""

from __future__ import annotations

import redis.asyncio as aioredis

from spendstream.alerts.settings import AlertsSettings


def redis_client(settings: AlertsSettings) -> aioredis.Redis:
    # Short timeouts: a stalled Redis call holds the consumer's batch and its partition with it; failing fast
    # lets the batch be redelivered (counting is idempotent) once Redis is back.
    return aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=10
    )
