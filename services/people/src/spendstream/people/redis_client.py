"""people's Redis connection: persons, memberships, invitations, sign-in links and sessions."""

from __future__ import annotations

import redis.asyncio as aioredis

from spendstream.people.settings import PeopleSettings


def redis_client(settings: PeopleSettings) -> aioredis.Redis:
    # Short timeouts: a sign-in or a member change waiting on a stalled Redis fails fast with 503.
    return aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=10
    )
