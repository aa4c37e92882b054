"""The control plane ingest owns: workspaces, API keys and data keys, written to compacted topics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import uuid_utils
from faststream.kafka import KafkaBroker

from spendstream.common import crypto, datakeys
from spendstream.common.erasure import LifecycleEvent
from spendstream.common.kafka import CompactedTable, Publisher
from spendstream.common.records import ApiKeyRecord, WorkspaceRecord
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import Scope, generate_key, hash_key
from spendstream.common.topics import API_KEYS, DATA_KEYS, LIFECYCLE, WORKSPACES

PLANS: dict[str, int] = {"free": 100_000, "team": 10_000_000, "enterprise": -1}


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: str  # shown once, never stored
    key_id: str
    scope: Scope


class ControlPlane:
    """Writes control-plane records. Every write waits for acks=all: a key exists once this returns."""

    def __init__(self, settings: BaseServiceSettings, broker: KafkaBroker) -> None:
        self._settings = settings
        prefix = settings.topic_prefix
        self._data_keys = Publisher(broker, DATA_KEYS, prefix)
        self._workspaces = Publisher(broker, WORKSPACES, prefix)
        self._api_keys = Publisher(broker, API_KEYS, prefix)
        self._lifecycle = Publisher(broker, LIFECYCLE, prefix)

    async def create_workspace(self, name: str, plan: str = "free") -> tuple[WorkspaceRecord, list[IssuedKey]]:
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r}; plans are {', '.join(PLANS)}")
        now = datetime.now(UTC)
        workspace = WorkspaceRecord(
            workspace_id=f"ws_{uuid_utils.uuid7().hex}",
            name=name,
            plan=plan,
            monthly_event_quota=PLANS[plan],
            created_at=now,
        )
        # Data key first: no envelope may ever name a key that consumers cannot find.
        await self.put_data_key(workspace.workspace_id, 1)
        await self._workspaces.publish(workspace, workspace.workspace_id)
        keys = [await self.issue_key(workspace.workspace_id, scope) for scope in ("ingest", "read", "admin")]
        return workspace, keys

    async def issue_key(self, workspace_id: str, scope: Scope, issued_by: str | None = None) -> IssuedKey:
        """A new key; `issued_by` names the member whose role caps it (None: the operator's)."""
        key = generate_key(scope)
        record = ApiKeyRecord(
            key_hash=hash_key(key),
            key_id=f"key_{uuid_utils.uuid7().hex[-16:]}",
            workspace_id=workspace_id,
            scope=scope,
            created_at=datetime.now(UTC),
            issued_by=issued_by,
        )
        await self._api_keys.publish(record, record.key_hash)
        return IssuedKey(key=key, key_id=record.key_id, scope=scope)

    async def revoke_key(self, record: ApiKeyRecord) -> None:
        revoked = record.model_copy(update={"revoked_at": datetime.now(UTC)})
        await self._api_keys.publish(revoked, record.key_hash)

    async def put_workspace(self, record: WorkspaceRecord) -> None:
        await self._workspaces.publish(record, record.workspace_id)

    async def tombstone_key(self, key_hash: str) -> None:
        """Remove an API key record for good (erasure): compaction drops every earlier value of it."""
        await self._api_keys.tombstone(key_hash)

    async def put_data_key(self, workspace_id: str, version: int) -> crypto.DataKeyVersion:
        """Write a fresh data key as `version` of the workspace: one record of its own (datakeys.py)."""
        record = crypto.new_version(workspace_id, version, self._settings.kek_bytes(), self._settings.kek_identity())
        await self._data_keys.publish(record, datakeys.record_key(workspace_id, version))
        return record

    async def tombstone_data_keys(self, record_keys: list[str]) -> None:
        """Remove data-key records for good: compaction drops every earlier value of each key. Erasing all of
        a workspace's records crypto-shreds it; removing a retired version only ends what it could decrypt."""
        for key in record_keys:
            await self._data_keys.tombstone(key)

    async def announce(self, event: LifecycleEvent) -> None:
        """Tell retention about a cancellation or reactivation (it schedules or cancels the deletion)."""
        await self._lifecycle.publish(event, event.workspace_id)


class WorkspaceDirectory:
    """Workspace records replayed from `ingest.workspaces.v1`: plan, quota and status of every workspace."""

    def __init__(self, settings: BaseServiceSettings) -> None:
        self.table: CompactedTable[WorkspaceRecord] = CompactedTable(settings, WORKSPACES)

    def get(self, workspace_id: str) -> WorkspaceRecord | None:
        return self.table.get(workspace_id)
