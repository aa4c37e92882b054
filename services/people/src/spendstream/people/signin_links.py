"""One-time sign-in links (`/v1/auth/link?token=...`): the operator's bootstrap of a workspace's first owner.

Redis: <prefix>people:signin-link:<sha256(token)> -> "<workspace_id> <member_id>", with the link's TTL. The
token is printed or mailed once and stored nowhere; following the link uses it up (GETDEL).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from spendstream.people.tokens import new_token, plausible, token_digest


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class SigninLinks:
    def __init__(self, redis: aioredis.Redis, redis_prefix: str, ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = redis_prefix
        self._ttl_ms = ttl_seconds * 1000

    def _key(self, digest: str) -> str:
        return f"{self._prefix}people:signin-link:{digest}"

    async def create(self, workspace_id: str, member_id: str) -> str:
        """A new single-use token signing in `member_id` of `workspace_id`."""
        token = new_token()
        await self._redis.set(self._key(token_digest(token)), f"{workspace_id} {member_id}", px=self._ttl_ms)
        return token

    async def peek(self, token: str) -> tuple[str, str] | None:
        """(workspace id, member id) of a live token, without using it up."""
        if not plausible(token):
            return None
        raw = await self._redis.get(self._key(token_digest(token)))
        if raw is None:
            return None
        workspace_id, member_id = _text(raw).split(" ", 1)
        return workspace_id, member_id

    async def take(self, token: str) -> tuple[str, str] | None:
        """(workspace id, member id) once; None for an unknown, used or expired token."""
        if not plausible(token):
            return None
        raw = await self._redis.getdel(self._key(token_digest(token)))
        if raw is None:
            return None
        workspace_id, member_id = _text(raw).split(" ", 1)
        return workspace_id, member_id
