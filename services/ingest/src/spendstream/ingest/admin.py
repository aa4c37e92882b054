"""Workspace administration: keys, data-key rotation, cancellation. Used by the admin HTTP API and the CLI.

Every change is a record on a compacted topic, written with acks=all; the replayed tables are then caught up
so the caller reads its own write. Other replicas see the change within one poll of their tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict

from spendstream.common.erasure import LifecycleEvent
from spendstream.common.records import WorkspaceRecord
from spendstream.common.tenants import KeyDirectory, KeyRing, Scope
from spendstream.ingest.workspaces import ControlPlane, IssuedKey, WorkspaceDirectory


class AdminError(Exception):
    """A refused admin action; `status` is the HTTP status, `code` a stable reason code, `retry_after` the
    seconds after which the same action can succeed (when waiting is what it takes)."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class KeyInfo(BaseModel):
    """An API key as listed: never the key, never its hash."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None
    issued_by: str | None = None  # the member whose role caps the key; None: issued by the operator


class WorkspaceInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    workspace_id: str
    name: str
    plan: str
    monthly_event_quota: int
    status: str
    cancelled_at: datetime | None
    data_key_version: int | None


class Admin:
    def __init__(
        self,
        control: ControlPlane,
        keys: KeyDirectory,
        keyring: KeyRing,
        workspaces: WorkspaceDirectory,
        *,
        rotation_interval: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._control = control
        self._rotation_interval = rotation_interval
        self._clock = clock
        self._keys = keys
        self._keyring = keyring
        self._workspaces = workspaces

    def _workspace(self, workspace_id: str) -> WorkspaceRecord:
        record = self._workspaces.get(workspace_id)
        if record is None or record.status == "deleted":
            raise AdminError(404, "unknown_workspace", "no such workspace")
        return record

    def workspace(self, workspace_id: str) -> WorkspaceInfo:
        record = self._workspace(workspace_id)
        return WorkspaceInfo(
            workspace_id=record.workspace_id,
            name=record.name,
            plan=record.plan,
            monthly_event_quota=record.monthly_event_quota,
            status=record.status,
            cancelled_at=record.cancelled_at,
            data_key_version=self._keyring.current_version(workspace_id),
        )

    def list_keys(self, workspace_id: str) -> list[KeyInfo]:
        self._workspace(workspace_id)
        records = [r for r in self._keys.table.values() if r.workspace_id == workspace_id]
        return [
            KeyInfo(
                key_id=r.key_id, scope=r.scope, created_at=r.created_at, revoked_at=r.revoked_at, issued_by=r.issued_by
            )
            for r in sorted(records, key=lambda r: r.created_at)
        ]

    async def issue_key(self, workspace_id: str, scope: Scope, issued_by: str | None = None) -> IssuedKey:
        self._workspace(workspace_id)
        issued = await self._control.issue_key(workspace_id, scope, issued_by)
        await self._keys.table.catch_up()
        return issued

    async def revoke_key(self, workspace_id: str, key_id: str) -> KeyInfo:
        self._workspace(workspace_id)
        matches = [r for r in self._keys.table.values() if r.workspace_id == workspace_id and r.key_id == key_id]
        if not matches:
            raise AdminError(404, "unknown_key", "no such key in this workspace")
        record = matches[0]
        if record.revoked_at is None:
            await self._control.revoke_key(record)
            await self._keys.table.catch_up()
        revoked = self._keys.table.get(record.key_hash) or record
        return KeyInfo(
            key_id=revoked.key_id,
            scope=revoked.scope,
            created_at=revoked.created_at,
            revoked_at=revoked.revoked_at,
            issued_by=revoked.issued_by,
        )

    async def rotate_data_key(self, workspace_id: str) -> int:
        """A new current data-key version; older versions keep decrypting what they protect.

        At most one rotation per workspace per `rotation_interval` (the first one is free): with retired versions
        removed after `datakeys.retired_lifetime()`, a workspace never holds more than lifetime / interval + 1
        versions, however often it asks.
        """
        self._workspace(workspace_id)
        await self._keyring.table.catch_up()  # the latest rotation, whichever replica made it
        versions = self._keyring.versions(workspace_id)
        if not versions:
            raise AdminError(409, "no_data_key", "the workspace has no data key")
        current = versions[-1]
        wait = current.created_at + self._rotation_interval - self._clock()
        if current.version > 1 and wait > timedelta(0):
            seconds = math.ceil(wait.total_seconds())
            raise AdminError(
                429,
                "rotation_rate_limited",
                f"the data key was rotated at {current.created_at.isoformat(timespec='seconds')}; a workspace can "
                f"rotate once every {int(self._rotation_interval.total_seconds())} s: retry in {seconds} s",
                retry_after=seconds,
            )
        rotated = await self._control.put_data_key(workspace_id, current.version + 1)
        await self._keyring.table.catch_up()
        return rotated.version

    async def cancel(self, workspace_id: str) -> WorkspaceInfo:
        """Cancel: events are refused from now on, and retention deletes everything 30 days later."""
        record = self._workspace(workspace_id)
        at = record.cancelled_at or datetime.now(UTC)
        if record.status != "cancelled":
            await self._control.put_workspace(record.model_copy(update={"status": "cancelled", "cancelled_at": at}))
        # Announced again on a repeat: a crash between the two writes must not leave retention unaware.
        await self._control.announce(LifecycleEvent(workspace_id=workspace_id, kind="cancelled", at=at))
        await self._workspaces.table.catch_up()
        return self.workspace(workspace_id)

    async def reactivate(self, workspace_id: str) -> WorkspaceInfo:
        """Undo a cancellation; retention then drops the scheduled deletion."""
        record = self._workspace(workspace_id)
        if record.status == "cancelled":
            await self._control.put_workspace(record.model_copy(update={"status": "active", "cancelled_at": None}))
            await self._control.announce(
                LifecycleEvent(workspace_id=workspace_id, kind="reactivated", at=datetime.now(UTC))
            )
            await self._workspaces.table.catch_up()
        return self.workspace(workspace_id)
