"""The control plane ingest owns: workspaces, API keys and data keys, written to compacted topics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import uuid_utils
from faststream.kafka import KafkaBroker

from spendstream.common import crypto
from spendstream.common.erasure import LifecycleEvent
from spendstream.common.kafka import CompactedTable
from spendstream.common.records import ApiKeyRecord, WorkspaceRecord
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import Scope, generate_key, hash_key
from spendstream.common.topics import API_KEYS, DATA_KEYS, LIFECYCLE, WORKSPACES, topic_name

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
        self._broker = broker

    async def _put(self, topic: str, key: str, value: bytes | None) -> None:
        await self._broker.publish(value, topic, key=key.encode())

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
        key_set = crypto.new_key_set(workspace.workspace_id, self._settings.kek_bytes(), self._settings.kek_id)
        await self._put(
            topic_name(DATA_KEYS, self._settings.topic_prefix),
            workspace.workspace_id,
            key_set.model_dump_json().encode(),
        )
        await self._put(
            topic_name(WORKSPACES, self._settings.topic_prefix),
            workspace.workspace_id,
            workspace.model_dump_json().encode(),
        )
        keys = [await self.issue_key(workspace.workspace_id, scope) for scope in ("ingest", "read", "admin")]
        return workspace, keys

    async def issue_key(self, workspace_id: str, scope: Scope) -> IssuedKey:
        key = generate_key(scope)
        record = ApiKeyRecord(
            key_hash=hash_key(key),
            key_id=f"key_{uuid_utils.uuid7().hex[-16:]}",
            workspace_id=workspace_id,
            scope=scope,
            created_at=datetime.now(UTC),
        )
        await self._put(
            topic_name(API_KEYS, self._settings.topic_prefix), record.key_hash, record.model_dump_json().encode()
        )
        return IssuedKey(key=key, key_id=record.key_id, scope=scope)

    async def revoke_key(self, record: ApiKeyRecord) -> None:
        revoked = record.model_copy(update={"revoked_at": datetime.now(UTC)})
        await self._put(
            topic_name(API_KEYS, self._settings.topic_prefix), record.key_hash, revoked.model_dump_json().encode()
        )

    async def put_workspace(self, record: WorkspaceRecord) -> None:
        await self._put(
            topic_name(WORKSPACES, self._settings.topic_prefix), record.workspace_id, record.model_dump_json().encode()
        )

    async def tombstone_key(self, key_hash: str) -> None:
        """Remove an API key record for good (erasure): compaction drops every earlier value of it."""
        await self._put(topic_name(API_KEYS, self._settings.topic_prefix), key_hash, None)

    async def shred_data_keys(self, workspace_id: str) -> None:
        """Tombstone the workspace's data-key set: every envelope encrypted under it becomes unreadable."""
        await self._put(topic_name(DATA_KEYS, self._settings.topic_prefix), workspace_id, None)

    async def announce(self, event: LifecycleEvent) -> None:
        """Tell retention about a cancellation or reactivation (it schedules or cancels the deletion)."""
        await self._put(
            topic_name(LIFECYCLE, self._settings.topic_prefix), event.workspace_id, event.model_dump_json().encode()
        )

    async def rotate_data_key(self, key_set: crypto.WrappedKeySet) -> crypto.WrappedKeySet:
        rotated = crypto.rotate(key_set, self._settings.kek_bytes())
        await self._put(
            topic_name(DATA_KEYS, self._settings.topic_prefix), key_set.workspace_id, rotated.model_dump_json().encode()
        )
        return rotated


class WorkspaceDirectory:
    """Workspace records replayed from `ingest.workspaces.v1`: plan, quota and status of every workspace."""

    def __init__(self, settings: BaseServiceSettings) -> None:
        self.table: CompactedTable[WorkspaceRecord] = CompactedTable(
            settings, WORKSPACES, WorkspaceRecord.model_validate_json
        )

    def get(self, workspace_id: str) -> WorkspaceRecord | None:
        return self.table.get(workspace_id)
