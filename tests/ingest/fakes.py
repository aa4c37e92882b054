"""Small in-memory stand-ins behind ingest's seams (publisher, dedupe, limiter, key ring, directories), so the
intake's and the HTTP handler's decisions run without Kafka or Redis, in milliseconds."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag

from spendstream.common import crypto
from spendstream.common.auth_brake import AuthBrake
from spendstream.common.key_backoff import KeyBackoff
from spendstream.common.records import WorkspaceRecord
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyDirectory, KeyRing, KeyUnavailable, Principal, Scope
from spendstream.ingest.batches import BatchAcceptor
from spendstream.ingest.dedupe import Deduplicator
from spendstream.ingest.intake import RawIntake
from spendstream.ingest.limits import Limiter, Reservation
from spendstream.ingest.workspaces import WorkspaceDirectory

KEK = os.urandom(32)


@dataclass
class Published:
    value: bytes
    topic: str
    key: bytes | None
    headers: dict[str, str] | None


@dataclass
class FakeBroker:
    """Takes every record, or raises `failure` while it is set (a broker that does not acknowledge)."""

    records: list[Published] = field(default_factory=list)
    failure: Exception | None = None

    async def publish(
        self, message: bytes, topic: str, *, key: bytes | None = None, headers: dict[str, str] | None = None
    ) -> None:
        if self.failure is not None:
            raise self.failure
        self.records.append(Published(message, topic, key, headers))

    def on(self, topic: str) -> list[Published]:
        return [r for r in self.records if r.topic == topic]


class FakeDedupe(Deduplicator):
    def __init__(self) -> None:  # no Redis: a set per workspace
        self.marked: dict[str, set[str]] = {}

    async def seen(self, workspace_id: str, event_ids: list[str]) -> set[str]:
        return self.marked.get(workspace_id, set()) & set(event_ids)

    async def mark(self, workspace_id: str, event_ids: list[str]) -> None:
        self.marked.setdefault(workspace_id, set()).update(event_ids)


class FakeLimiter(Limiter):
    """No rate limit; a monthly quota counted in memory."""

    def __init__(self) -> None:
        self.used: dict[str, int] = {}

    async def take(self, workspace_id: str, events: int) -> None:
        return None

    async def reserve(self, workspace_id: str, events: int, quota: int, now: datetime) -> Reservation:
        self.used[workspace_id] = self.used.get(workspace_id, 0) + events
        return Reservation(workspace_id, events)

    async def release(self, reservation: Reservation) -> None:
        if reservation.key is not None:
            self.used[reservation.key] -= reservation.events


class FakeKeyRing(KeyRing):
    """Data keys wrapped by KEK; those of `foreign` by another KEK (as the real ring, they raise KeyUnavailable)."""

    def __init__(self, *workspace_ids: str, foreign: tuple[str, ...] = ()) -> None:
        self._keys = {ws: crypto.new_version(ws, 1, KEK, "test") for ws in workspace_ids}
        self._keys.update({ws: crypto.new_version(ws, 1, os.urandom(32), "kek-other") for ws in foreign})

    def current_version(self, workspace_id: str) -> int | None:
        return 1 if workspace_id in self._keys else None

    async def data_key(self, workspace_id: str, version: int) -> bytes | None:
        record = self._keys.get(workspace_id)
        if record is None or record.version != version:
            return None
        try:
            return crypto.unwrap_version(record, KEK)
        except InvalidTag:
            raise KeyUnavailable(workspace_id, record.kek_id) from None


class FakeKeys(KeyDirectory):
    def __init__(self, principals: dict[str, Principal]) -> None:
        self._principals = principals
        self.brake = AuthBrake(BaseServiceSettings.model_construct())  # the defaults

    def authenticate(self, key: str) -> Principal | None:
        return self._principals.get(key)


class FakeWorkspaces(WorkspaceDirectory):
    def __init__(self, *records: WorkspaceRecord) -> None:
        self._records = {r.workspace_id: r for r in records}

    def get(self, workspace_id: str) -> WorkspaceRecord | None:
        return self._records.get(workspace_id)


def workspace(workspace_id: str, status: str = "active") -> WorkspaceRecord:
    return WorkspaceRecord.model_validate(
        {
            "workspace_id": workspace_id,
            "name": workspace_id,
            "plan": "team",
            "monthly_event_quota": -1,
            "status": status,
            "created_at": datetime.now(UTC),
        }
    )


def principal(workspace_id: str, scope: Scope = "ingest") -> Principal:
    return Principal(workspace_id=workspace_id, scope=scope, key_id=f"{workspace_id}-{scope}")


@dataclass
class Record:
    """The parts of an aiokafka ConsumerRecord the intake reads."""

    value: bytes | None
    headers: list[tuple[str, bytes]]
    offset: int
    partition: int = 0
    topic: str = "ingest.raw.v1"


@dataclass
class Door:
    """An ingest without a broker or Redis: the acceptor and the raw intake over fakes."""

    broker: FakeBroker
    dedupe: FakeDedupe
    limiter: FakeLimiter
    workspaces: FakeWorkspaces
    keys: FakeKeys
    acceptor: BatchAcceptor
    intake: RawIntake


def door(*, max_record_bytes: int = 200_000) -> Door:
    """Workspace `ws_a` (key `key-a`), a cancelled `ws_c` (`key-c`), a read key of `ws_a` (`read-a`), and
    `ws_k` (`key-k`), whose data key another KEK wrapped."""
    broker, dedupe, limiter = FakeBroker(), FakeDedupe(), FakeLimiter()
    workspaces = FakeWorkspaces(workspace("ws_a"), workspace("ws_c", "cancelled"), workspace("ws_k"))
    keys = FakeKeys(
        {
            "key-a": principal("ws_a"),
            "key-c": principal("ws_c"),
            "read-a": principal("ws_a", "read"),
            "key-k": principal("ws_k"),
        }
    )
    acceptor = BatchAcceptor(
        broker=broker,
        keyring=FakeKeyRing("ws_a", "ws_c", foreign=("ws_k",)),
        dedupe=dedupe,
        limiter=limiter,
        topic_prefix="",
        max_age=timedelta(days=372),
        publish_timeout=1.0,
    )
    intake = RawIntake(
        acceptor=acceptor,
        keys=keys,
        workspaces=workspaces,
        broker=broker,
        topic_prefix="",
        max_record_bytes=max_record_bytes,
        retry_pause_seconds=0.0,
        key_backoff=KeyBackoff("ingest_raw", first_delay=0.0),
    )
    return Door(broker, dedupe, limiter, workspaces, keys, acceptor, intake)
