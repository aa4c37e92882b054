"""people as an erasure owner: forgets an erased workspace's members and invitations, verifies, reports.

For a workspace scope (each step idempotent, so a repeated or resumed command is safe):
  1. every membership of the workspace is published as `removed` and then tombstoned on `people.members.v1`
     (every service's access check forgets it), its sessions revoked and its Redis record deleted;
  2. a person left without any membership is erased (e-mail, name, credentials); one still a member of
     another workspace keeps their account there;
  3. every pending invitation of the workspace (with its e-mail) and its token index is deleted;
  4. SCAN `<prefix>people:*{<workspace_id>}*` must then find nothing; the report says what was counted.
A customer scope finds nothing: people keeps no per-customer data.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from spendstream.common.erasure import DeletionCommand, DeletionReport, Owner, StoreCount, Verification
from spendstream.common.redis_keys import tenant_pattern
from spendstream.people.directory import Directory
from spendstream.people.invitations import Invitations


class Eraser:
    owner: Owner = "people"

    def __init__(
        self, *, directory: Directory, invitations: Invitations, redis: aioredis.Redis, redis_prefix: str
    ) -> None:
        self._directory = directory
        self._invitations = invitations
        self._redis = redis
        self._prefix = redis_prefix

    async def erase(self, command: DeletionCommand) -> DeletionReport:
        """Delete (if anything is left) and verify; a repeated command finds zero before and reports again."""
        if command.scope.customer_id is not None:
            return DeletionReport.verified(
                command,
                "people",
                [StoreCount(store="redis:people", before=0, after=0)],
                [Verification(store="redis:people", query="per-customer state kept by people (none)", result=0)],
            )
        ws = command.scope.workspace_id
        before = len(await self._redis_keys(ws))
        memberships, persons = await self._directory.erase_workspace(ws)
        invitations = await self._invitations.erase_workspace(ws)
        after = len(await self._redis_keys(ws))
        counts = [
            StoreCount(store="redis:people", before=before, after=after),
            StoreCount(store="people:memberships", before=memberships, after=0),
            StoreCount(store="people:persons_erased", before=persons, after=0),
            StoreCount(store="people:invitations", before=invitations, after=0),
        ]
        verifications = [
            Verification(store="redis:people", query="SCAN MATCH <prefix>people:*{<workspace_id>}*", result=after)
        ]
        return DeletionReport.verified(command, "people", counts, verifications)

    async def _redis_keys(self, workspace_id: str) -> list[bytes]:
        own = f"{self._prefix}people:".encode()
        found: list[bytes] = []
        async for key in self._redis.scan_iter(match=tenant_pattern(self._prefix, workspace_id), count=1000):
            if bytes(key).startswith(own):
                found.append(bytes(key))
        return found
