"""Members' browser sessions: opaque random ids kept server-side in Redis, read by every service's access check.

The people service creates and revokes them (sign-in, sign-out, password change, removal); every service looks
one up when a request carries the session cookie. Only the id's SHA-256 names the Redis key, so a copy of Redis
holds no usable session id. A session ends at its idle expiry (no request for `session_idle_seconds`, the key's
TTL), at its absolute expiry, or when revoked. The CSRF token is an HMAC of the session id under a key derived
from the KEK: any service can check it, none stores it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from spendstream.common import crypto
from spendstream.common.redis_keys import tenant_key
from spendstream.common.settings import BaseServiceSettings

SESSION_COOKIE = "ss_session"
CSRF_HEADER = "X-CSRF-Token"
# A write per request would make every read a write; the idle clock moves at most this often.
_TOUCH_EVERY = timedelta(seconds=30)


class SessionRedis(Protocol):
    """The Redis commands sessions use (redis-py's asyncio client has them): common brings no database client,
    the services that check sessions bring their own."""

    def get(self, name: str) -> Awaitable[Any]: ...
    def set(self, name: str, value: str, *, px: int | None = None) -> Awaitable[Any]: ...
    def getdel(self, name: str) -> Awaitable[Any]: ...
    def delete(self, *names: str) -> Awaitable[Any]: ...
    def sadd(self, name: str, *values: str) -> Awaitable[Any]: ...
    def srem(self, name: str, *values: str) -> Awaitable[Any]: ...
    def smembers(self, name: str) -> Awaitable[Any]: ...
    def pexpire(self, name: str, time: int) -> Awaitable[Any]: ...


class SessionRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    member_id: str
    workspace_id: str
    method: str  # "password", "password+totp", "oidc", "link"
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # the absolute expiry


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, settings: BaseServiceSettings, redis: SessionRedis) -> None:
        self._redis = redis
        self._prefix = settings.redis_prefix
        self._idle = timedelta(seconds=settings.session_idle_seconds)
        self._absolute = timedelta(seconds=settings.session_absolute_seconds)
        self._csrf_key = crypto.derived_key(settings.kek_bytes(), "csrf")

    def _key(self, session_id: str) -> str:
        return f"{self._prefix}people:session:{_digest(session_id)}"

    def _member_key(self, workspace_id: str, member_id: str) -> str:
        # Under the workspace's hash tag: a workspace erasure's SCAN finds every member's session index.
        return tenant_key(self._prefix, "people", "sessions", workspace_id, member_id)

    async def create(self, member_id: str, workspace_id: str, method: str) -> tuple[str, SessionRecord]:
        """A new session: its id (for the cookie, never stored) and record."""
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        record = SessionRecord(
            member_id=member_id,
            workspace_id=workspace_id,
            method=method,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self._absolute,
        )
        index = self._member_key(workspace_id, member_id)
        # The index first: a session that exists is always one `revoke_member` finds.
        await self._redis.sadd(index, _digest(session_id))
        await self._redis.pexpire(index, int(self._absolute.total_seconds() * 1000))
        await self._redis.set(self._key(session_id), record.model_dump_json(), px=self._ttl_ms(record, now))
        return session_id, record

    def _ttl_ms(self, record: SessionRecord, now: datetime) -> int:
        return max(1, int(min(self._idle, record.expires_at - now).total_seconds() * 1000))

    async def get(self, session_id: str) -> SessionRecord | None:
        """The live session, its idle clock moved on; None when unknown, expired or revoked."""
        raw = await self._redis.get(self._key(session_id))
        if raw is None:
            return None
        record = SessionRecord.model_validate_json(raw)
        now = datetime.now(UTC)
        if now >= record.expires_at or now - record.last_seen_at >= self._idle:
            await self._redis.delete(self._key(session_id))
            return None
        if now - record.last_seen_at >= _TOUCH_EVERY:
            record = record.model_copy(update={"last_seen_at": now})
            await self._redis.set(self._key(session_id), record.model_dump_json(), px=self._ttl_ms(record, now))
        return record

    async def revoke(self, session_id: str) -> None:
        raw = await self._redis.getdel(self._key(session_id))
        if raw is not None:
            record = SessionRecord.model_validate_json(raw)
            await self._redis.srem(self._member_key(record.workspace_id, record.member_id), _digest(session_id))

    async def revoke_member(self, workspace_id: str, member_id: str) -> int:
        """End every session of the member (password change, removal, erasure); how many were live."""
        index = self._member_key(workspace_id, member_id)
        digests = await self._redis.smembers(index)
        keys = [f"{self._prefix}people:session:{d.decode() if isinstance(d, bytes) else d}" for d in digests]
        removed = int(await self._redis.delete(*keys)) if keys else 0
        await self._redis.delete(index)
        return removed

    def csrf_token(self, session_id: str) -> str:
        """The token a cookie-authenticated state-changing request must carry in `X-CSRF-Token`."""
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session_id: str, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf_token(session_id), token)
