"""ingest as an erasure owner: deletes a workspace's keys, data keys and Redis state, verifies, reports.

For a workspace scope, in this order (each step idempotent, so a repeated or resumed command is safe):
  1. tombstone every API key of the workspace on `ingest.apikeys.v1`: every replica refuses them at once;
  2. tombstone every data-key record of the workspace on `ingest.datakeys.v1` (each version, and a whole-set
     record of the older layout): crypto-shredding, every envelope left in Kafka or a backup becomes unreadable;
  3. replace the workspace record with a `deleted` marker that keeps only the id, the plan and dates (the
     name is blanked): a marker rather than a tombstone, so a replica that replays an old key record still
     refuses it and the id is never reissued;
  4. delete every ingest Redis key of the workspace (dedupe ids, rate bucket, quota counters);
  5. catch the replayed tables up and SCAN Redis again: the verifications must find nothing;
  6. return the DeletionReport (owner "ingest"); `erasure_owner.serve_erasure` publishes it.
A customer scope finds nothing to delete: ingest keeps no per-customer state (tags travel only inside
encrypted envelopes), and the report says so with a zero-count verification.
The command is committed only after the report is published, so a crash resumes the command.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from spendstream.common.erasure import DeletionCommand, DeletionReport, Owner, StoreCount, Verification
from spendstream.common.redis_keys import tenant_pattern
from spendstream.common.tenants import KeyDirectory, KeyRing
from spendstream.common.topics import API_KEYS, DATA_KEYS, WORKSPACES, topic_name
from spendstream.ingest import metrics
from spendstream.ingest.workspaces import ControlPlane, WorkspaceDirectory


class Eraser:
    owner: Owner = "ingest"

    def __init__(
        self,
        *,
        control: ControlPlane,
        keys: KeyDirectory,
        keyring: KeyRing,
        workspaces: WorkspaceDirectory,
        redis: aioredis.Redis,
        redis_prefix: str,
        topic_prefix: str,
    ) -> None:
        self._control = control
        self._keys = keys
        self._keyring = keyring
        self._workspaces = workspaces
        self._redis = redis
        self._redis_prefix = redis_prefix
        self._topic_prefix = topic_prefix

    async def erase(self, command: DeletionCommand) -> DeletionReport:
        """Delete (if anything is left) and verify; a repeated command finds zero before and reports again."""
        report = await self._erase(command)
        scope = "customer" if command.scope.customer_id is not None else "workspace"
        metrics.ERASURES.labels(scope, report.status).inc()
        return report

    async def _erase(self, command: DeletionCommand) -> DeletionReport:
        if command.scope.customer_id is not None:
            return DeletionReport.verified(
                command,
                "ingest",
                [StoreCount(store="ingest", before=0, after=0)],
                [
                    Verification(
                        store="ingest",
                        query="per-customer state kept by ingest (none: tags travel only encrypted)",
                        result=0,
                    )
                ],
            )
        ws = command.scope.workspace_id
        await self._catch_up()
        keys_before = self._key_hashes(ws)
        datakeys_before = list(self._keyring.records(ws))
        record = self._workspaces.get(ws)
        workspace_before = int(record is not None and record.status != "deleted")
        redis_before = await self._redis_keys(ws)

        for key_hash in keys_before:
            await self._control.tombstone_key(key_hash)
        if datakeys_before:
            await self._control.tombstone_data_keys(datakeys_before)
        if record is not None and record.status != "deleted":
            await self._control.put_workspace(record.model_copy(update={"status": "deleted", "name": ""}))
        if redis_before:
            # UNLINK: a busy workspace's dedupe sets hold millions of ids, which DEL would free while Redis
            # serves nobody else; UNLINK removes the keys at once and frees their memory in the background.
            await self._redis.unlink(*redis_before)

        await self._catch_up()
        keys_after = len(self._key_hashes(ws))
        datakeys_after = len(self._keyring.records(ws))
        after_record = self._workspaces.get(ws)
        workspace_after = int(after_record is not None and after_record.status != "deleted")
        redis_after = len(await self._redis_keys(ws))
        names = {t.name: topic_name(t, self._topic_prefix) for t in (API_KEYS, DATA_KEYS, WORKSPACES)}
        counts = [
            StoreCount(store=f"kafka:{names[API_KEYS.name]}", before=len(keys_before), after=keys_after),
            StoreCount(store=f"kafka:{names[DATA_KEYS.name]}", before=len(datakeys_before), after=datakeys_after),
            StoreCount(store=f"kafka:{names[WORKSPACES.name]}", before=workspace_before, after=workspace_after),
            StoreCount(store="redis:ingest", before=len(redis_before), after=redis_after),
        ]
        verifications = [
            Verification(
                store=f"kafka:{names[API_KEYS.name]}", query="replayed key records of the workspace", result=keys_after
            ),
            Verification(
                store=f"kafka:{names[DATA_KEYS.name]}",
                query="replayed data-key records of the workspace (every version)",
                result=datakeys_after,
            ),
            Verification(
                store=f"kafka:{names[WORKSPACES.name]}",
                query="workspace records not marked deleted",
                result=workspace_after,
            ),
            Verification(
                store="redis:ingest", query="SCAN MATCH <prefix>ingest:*{<workspace_id>}*", result=redis_after
            ),
        ]
        return DeletionReport.verified(command, "ingest", counts, verifications)

    async def _catch_up(self) -> None:
        await self._keys.table.catch_up()
        await self._keyring.table.catch_up()
        await self._workspaces.table.catch_up()

    def _key_hashes(self, workspace_id: str) -> list[str]:
        return [r.key_hash for r in self._keys.table.values() if r.workspace_id == workspace_id]

    async def _redis_keys(self, workspace_id: str) -> list[bytes]:
        # tenant_pattern matches every service's keys of the workspace; ingest deletes only its own.
        own = f"{self._redis_prefix}ingest:".encode()
        found: list[bytes] = []
        pattern = tenant_pattern(self._redis_prefix, workspace_id)
        async for key in self._redis.scan_iter(match=pattern, count=1000):
            if bytes(key).startswith(own):
                found.append(bytes(key))
        return found
