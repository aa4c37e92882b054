"""Invitations: a workspace invites an e-mail address with a role; the link is single-use and expires.

Redis layout:
  <prefix>people:invitation:{<workspace_id>}:<invitation_id>   Invitation as JSON (TTL: its expiry)
  <prefix>people:invitation-token:<sha256(token)>             "<workspace_id> <invitation_id>" (TTL: its expiry)
The token itself is returned once, to be mailed, and stored nowhere.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict

from spendstream.common.records import Role
from spendstream.common.redis_keys import tenant_key
from spendstream.people.tokens import new_token, plausible, token_digest


class Invitation(BaseModel):
    """A pending invitation. The e-mail is personal data: erased with the workspace, gone once accepted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    invitation_id: str
    workspace_id: str
    email: str  # normalised
    role: Role
    invited_by: str  # a member id, a key id, or "operator"
    created_at: datetime
    expires_at: datetime
    token_hash: str


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class Invitations:
    def __init__(self, redis: aioredis.Redis, redis_prefix: str, ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = redis_prefix
        self._ttl = timedelta(seconds=ttl_seconds)

    def _key(self, workspace_id: str, invitation_id: str) -> str:
        return tenant_key(self._prefix, "people", "invitation", workspace_id, invitation_id)

    def _token_key(self, digest: str) -> str:
        return f"{self._prefix}people:invitation-token:{digest}"

    async def create(self, workspace_id: str, email: str, role: Role, invited_by: str) -> tuple[Invitation, str]:
        """A new invitation and its token (to be mailed, never stored or logged)."""
        token = new_token()
        now = datetime.now(UTC)
        invitation = Invitation(
            invitation_id=f"inv_{secrets.token_hex(12)}",
            workspace_id=workspace_id,
            email=email,
            role=role,
            invited_by=invited_by,
            created_at=now,
            expires_at=now + self._ttl,
            token_hash=token_digest(token),
        )
        ttl_ms = int(self._ttl.total_seconds() * 1000)
        await self._redis.set(
            self._key(workspace_id, invitation.invitation_id), invitation.model_dump_json(), px=ttl_ms
        )
        await self._redis.set(
            self._token_key(invitation.token_hash), f"{workspace_id} {invitation.invitation_id}", px=ttl_ms
        )
        return invitation, token

    async def get(self, workspace_id: str, invitation_id: str) -> Invitation | None:
        raw = await self._redis.get(self._key(workspace_id, invitation_id))
        if raw is None:
            return None
        invitation = Invitation.model_validate_json(raw)
        return invitation if invitation.expires_at > datetime.now(UTC) else None

    async def pending(self, workspace_id: str) -> list[Invitation]:
        """The workspace's invitations not yet accepted, revoked or expired, oldest first."""
        found: list[Invitation] = []
        async for key in self._redis.scan_iter(match=self._key(workspace_id, "*"), count=500):
            raw = await self._redis.get(key)
            if raw is not None:
                invitation = Invitation.model_validate_json(raw)
                if invitation.expires_at > datetime.now(UTC):
                    found.append(invitation)
        return sorted(found, key=lambda i: (i.created_at, i.invitation_id))

    async def revoke(self, workspace_id: str, invitation_id: str) -> bool:
        raw = await self._redis.getdel(self._key(workspace_id, invitation_id))
        if raw is None:
            return False
        await self._redis.delete(self._token_key(Invitation.model_validate_json(raw).token_hash))
        return True

    async def peek(self, token: str) -> Invitation | None:
        """The live invitation of a token, without using it up (to check the acceptance before taking it)."""
        if not plausible(token):
            return None
        where = await self._redis.get(self._token_key(token_digest(token)))
        if where is None:
            return None
        workspace_id, invitation_id = _text(where).split(" ", 1)
        return await self.get(workspace_id, invitation_id)

    async def take(self, token: str) -> Invitation | None:
        """Use the token up: the invitation once, None ever after (or when unknown, revoked or expired)."""
        if not plausible(token):
            return None
        where = await self._redis.getdel(self._token_key(token_digest(token)))
        if where is None:
            return None
        workspace_id, invitation_id = _text(where).split(" ", 1)
        raw = await self._redis.getdel(self._key(workspace_id, invitation_id))
        if raw is None:
            return None
        invitation = Invitation.model_validate_json(raw)
        return invitation if invitation.expires_at > datetime.now(UTC) else None

    async def erase_workspace(self, workspace_id: str) -> int:
        """Delete every invitation of the workspace (and its token index); how many there were."""
        count = 0
        async for key in self._redis.scan_iter(match=self._key(workspace_id, "*"), count=500):
            raw = await self._redis.getdel(key)
            if raw is not None:
                await self._redis.delete(self._token_key(Invitation.model_validate_json(raw).token_hash))
                count += 1
        return count

    async def erase_email(self, workspace_id: str, email: str) -> int:
        """Delete the workspace's pending invitations of one address (that person's erasure)."""
        count = 0
        for invitation in await self.pending(workspace_id):
            if invitation.email == email and await self.revoke(workspace_id, invitation.invitation_id):
                count += 1
        return count
