"""Every Kafka topic, declared once: who produces it, who consumes it, its record type and how long it lives.

Topics are provisioned explicitly (`spendstream topics create`); broker auto-creation stays off so a typo fails.
A topic's `record` is the codec of its values: a pydantic model as JSON, or `RAW` for values its readers take
as bytes (untrusted input validated by its reader, or sealed envelopes that only `envelope.py` opens).
`kafka.subscribe` decodes into the declared type and `kafka.Publisher` encodes from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel

from spendstream.common.crypto import DataKeyCodec
from spendstream.common.erasure import DeletionCommand, DeletionReport, DeletionRequest, LifecycleEvent, Receipt
from spendstream.common.pricebook import PriceVersionCodec, TenantRate
from spendstream.common.records import (
    ApiKeyRecord,
    AuditRecord,
    BudgetRecord,
    ConnectorRecord,
    ConnectorState,
    DataAlert,
    DeadLetter,
    FiredAlert,
    IngestTally,
    MemberRecord,
    ProviderDay,
    RejectionRecord,
    WorkspaceRecord,
)

DAY_MS = 24 * 3600 * 1000
# The stated bound on how long a tombstoned or superseded value of a compacted topic stays readable
# (`compaction_bound_seconds`, at most this): an erasure's receipt says `verified` only once it has passed.
COMPACTION_BOUND_MS = 3600 * 1000
R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)


class Codec(Protocol[R]):
    def encode(self, record: R) -> bytes: ...

    def decode(self, value: bytes) -> R:
        """The record, or ValueError (pydantic's ValidationError is one) for a value that is not one."""
        ...


@dataclass(frozen=True, slots=True)
class Json(Generic[M]):
    """Values are a pydantic model as JSON."""

    model: type[M]

    def encode(self, record: M) -> bytes:
        return record.model_dump_json().encode()

    def decode(self, value: bytes) -> M:
        return self.model.model_validate_json(value)


@dataclass(frozen=True, slots=True)
class Raw:
    """Values pass as bytes: their reader parses them within its own bounds."""

    def encode(self, record: bytes) -> bytes:
        return record

    def decode(self, value: bytes) -> bytes:
        return value


RAW = Raw()


@dataclass(frozen=True, slots=True)
class Topic(Generic[R]):
    name: str
    producer: str
    consumers: tuple[str, ...]
    record: Codec[R]
    key: str  # what the record key holds
    partitions: int
    retention_ms: int | None  # None: kept until compacted away (compacted topics)
    cleanup: Literal["delete", "compact"]
    # LogAppendTime: the broker stamps records on arrival, so retention counts from ingestion, never from a
    # client's back-dated event time (openmeter #5005 lost back-dated events that way).
    timestamp_type: Literal["CreateTime", "LogAppendTime"] = "CreateTime"
    extra: dict[str, str] = field(default_factory=dict)

    def configs(self, compaction_bound_ms: int = COMPACTION_BOUND_MS) -> dict[str, str]:
        """The broker configuration; `compaction_bound_ms` bounds how long a compacted topic keeps an old value."""
        cfg: dict[str, str] = {"cleanup.policy": self.cleanup, "message.timestamp.type": self.timestamp_type}
        if self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
            # Retention deletes whole segments; a day-long segment bounds how long data outlives retention.
            cfg["segment.ms"] = str(min(self.retention_ms, DAY_MS))
        if self.cleanup == "compact":
            cfg.update(compaction_configs(compaction_bound_ms))
        cfg.update(self.extra)
        return cfg


def compaction_configs(bound_ms: int) -> dict[str, str]:
    """Configs under which a superseded or tombstoned value is gone within `bound_ms` of being overwritten.

    The cleaner never touches the active segment, and a segment rolls only on an append once it is `segment.ms`
    old (the erasure saga appends until the value is gone); `max.compaction.lag.ms` then makes the log due for
    cleaning whatever its dirty ratio. Each takes a third of the bound, the last third is margin for the
    cleaner's backoff and a busy cleaner thread. Tombstones themselves hold no content and stay
    `delete.retention.ms` so that a consumer offline for days still sees the deletion.
    """
    step = str(max(1, bound_ms // 3))
    return {
        "segment.ms": step,
        "max.compaction.lag.ms": step,
        "delete.retention.ms": str(7 * DAY_MS),
        "min.cleanable.dirty.ratio": "0.1",
    }


def bound_ms(seconds: float) -> int:
    return max(3, int(seconds * 1000))


# Where only the topic's name and configuration matter (provisioning, checks), whatever its record type.
AnyTopic = Topic[Any]

USAGE_EVENTS = Topic(
    "usage.events.v1",
    "ingest",
    ("rollup", "alerts"),
    RAW,  # a BatchEnvelope (envelope.py) sealed with the workspace's data key, opened by envelope.read_record
    "workspace_id",
    partitions=6,
    retention_ms=7 * DAY_MS,
    cleanup="delete",
    timestamp_type="LogAppendTime",
    # Kafka's default, stated: ingest's envelopes fit it (ingest.batches.ENVELOPE_MAX_BYTES, checked at startup).
    extra={"max.message.bytes": str(1024 * 1024 + 12)},
)
INGEST_RAW = Topic(
    "ingest.raw.v1",
    "external producers",
    ("ingest",),
    RAW,  # untrusted: JSON {"events": [RequestEvent]} with header x-api-key (an ingest key), checked by intake.py
    "anything (unused)",
    partitions=6,
    retention_ms=3 * DAY_MS,
    cleanup="delete",
    timestamp_type="LogAppendTime",
    # A record at ingest's documented maximum (1 MiB) with its headers and framing, sent uncompressed.
    extra={"max.message.bytes": str(1024 * 1024 + 64 * 1024)},
)
INGEST_REJECTED = Topic(
    "ingest.rejected.v1",
    "ingest",
    ("operators",),
    Json(RejectionRecord),
    "workspace_id when known",
    partitions=1,
    retention_ms=7 * DAY_MS,
    cleanup="delete",
)
WORKSPACES = Topic(
    "ingest.workspaces.v1",
    "ingest",
    ("ingest", "retention"),
    Json(WorkspaceRecord),
    "workspace_id",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
API_KEYS = Topic(
    "ingest.apikeys.v1",
    "ingest",
    ("ingest", "rollup", "alerts", "retention"),
    Json(ApiKeyRecord),
    "the key's SHA-256",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
DATA_KEYS = Topic(
    "ingest.datakeys.v1",
    "ingest",
    ("ingest", "rollup", "alerts"),
    DataKeyCodec(),  # one DataKeyVersion per record; a WrappedKeySet (all versions) keyed by the workspace id
    "<workspace_id>:v<version> (datakeys.record_key); the workspace_id alone for a WrappedKeySet",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
ROLLUP_DEAD_LETTERS = Topic(
    "rollup.deadletter.v1",
    "rollup",
    ("operators",),
    Json(DeadLetter),
    "workspace_id when known",
    partitions=1,
    retention_ms=14 * DAY_MS,
    cleanup="delete",
)
BUDGETS = Topic(
    "alerts.budgets.v1",
    "alerts",
    ("alerts",),
    Json(BudgetRecord),
    "budget_id",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
ALERTS_FIRED = Topic(
    "alerts.fired.v1",
    "alerts",
    ("webhooks", "e-mail", "external"),
    Json(FiredAlert),
    "budget_id",
    partitions=3,
    retention_ms=30 * DAY_MS,
    cleanup="delete",
)
LIFECYCLE = Topic(
    "retention.lifecycle.v1",
    "ingest / billing",
    ("retention",),
    Json(LifecycleEvent),
    "workspace_id",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
DELETION_REQUESTS = Topic(
    "retention.requests.v1",
    "retention / compliance tools",
    ("retention",),
    Json(DeletionRequest),
    "<workspace_id>/<request_id> (erasure.request_key)",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
DELETION_COMMANDS = Topic(
    "retention.commands.v1",
    "retention",
    ("ingest", "rollup", "alerts", "connectors"),
    Json(DeletionCommand),
    "request_id",
    partitions=1,
    retention_ms=30 * DAY_MS,
    cleanup="delete",
)
DELETION_REPORTS = Topic(
    "retention.reports.v1",
    "ingest / rollup / alerts",
    ("retention",),
    Json(DeletionReport),
    "request_id",
    partitions=1,
    retention_ms=30 * DAY_MS,
    cleanup="delete",
)
AUDIT = Topic(
    "audit.receipts.v1",
    "retention",
    ("compliance",),
    Json(Receipt),
    "<workspace_id>/<request_id> (erasure.request_key)",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
# What ingest accepted, per envelope (the completeness ledger, rollup/ledger.py): published after the envelope's
# ack and before the answer, so each acknowledged envelope has its tally (see ingest/batches.py); counts only.
INGEST_TALLIES = Topic(
    "ingest.tallies.v1",
    "ingest",
    ("rollup",),
    Json(IngestTally),
    "workspace_id",
    partitions=6,
    retention_ms=7 * DAY_MS,
    cleanup="delete",
)
# Findings about a workspace's data (a completeness gap, an unpriced model) that alerts delivers to the
# workspace's budget channels; ids and numbers only.
ROLLUP_ALERTS = Topic(
    "rollup.alerts.v1",
    "rollup / connectors",
    ("alerts",),
    Json(DataAlert),
    "workspace_id",
    partitions=1,
    retention_ms=30 * DAY_MS,
    cleanup="delete",
)
# The largest price table a version may carry (LiteLLM's is ~3 MB): under the producer's max_request_size
# (kafka.make_broker), which aiokafka checks before compression.
PRICE_TABLE_MAX_BYTES = 7 * 1024 * 1024
PRICE_VERSIONS = Topic(
    "pricing.versions.v1",
    "rollup (scheduled refresh, approvals) / spendstream prices",
    ("rollup", "alerts"),
    PriceVersionCodec(),  # pricebook.VersionRecord: metadata JSON, a newline, the LiteLLM table's JSON
    "version_id (<effective day>.<digest prefix>)",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
    # The broker checks the compressed batch (~300 KB for LiteLLM's table under LZ4); room for an uncompressed one.
    extra={"max.message.bytes": str(PRICE_TABLE_MAX_BYTES + 1024 * 1024)},
)
PRICE_RATES = Topic(
    "pricing.rates.v1",
    "rollup (admin API) / spendstream prices rates",
    ("rollup", "alerts"),
    Json(TenantRate),
    "<workspace_id>/<rate_id> (pricebook.rate_key); a tombstone deletes the rate",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
# Provider connectors (connectors service): their configuration with the sealed admin key, and their cursors.
CONNECTORS_CONFIG = Topic(
    "connectors.config.v1",
    "connectors",
    ("connectors", "rollup"),
    Json(ConnectorRecord),
    "<workspace_id>/<connector_id>",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
CONNECTORS_STATE = Topic(
    "connectors.state.v1",
    "connectors",
    ("connectors",),
    Json(ConnectorState),
    "<workspace_id>/<connector_id>",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
# What a connector read of a provider's usage and bill, one record per connector and day (ProviderDay.key):
# a re-read replaces the day. Figures only, no content.
CONNECTORS_USAGE = Topic(
    "connectors.usage.v1",
    "connectors",
    ("rollup",),
    Json(ProviderDay),
    "<workspace_id>/<connector_id>/<day> (ProviderDay.key)",
    partitions=1,
    retention_ms=30 * DAY_MS,
    cleanup="delete",
)

# Members and their roles (ids only: no e-mail, no name), replayed by every service's access check.
MEMBERS = Topic(
    "people.members.v1",
    "people",
    ("ingest", "rollup", "alerts", "retention", "connectors", "people"),
    Json(MemberRecord),
    "member_id",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
# Every administrative action of every service, published before its effect (`audit.py`: fail closed); rollup
# chains and stores them per workspace.
AUDIT_RECORDS = Topic(
    "audit.records.v1",
    "every service",
    ("rollup",),
    Json(AuditRecord),
    "workspace_id",
    partitions=3,
    retention_ms=30 * DAY_MS,
    cleanup="delete",
)
ALL_TOPICS: tuple[AnyTopic, ...] = (
    USAGE_EVENTS,
    INGEST_RAW,
    INGEST_REJECTED,
    WORKSPACES,
    API_KEYS,
    DATA_KEYS,
    ROLLUP_DEAD_LETTERS,
    BUDGETS,
    ALERTS_FIRED,
    LIFECYCLE,
    DELETION_REQUESTS,
    DELETION_COMMANDS,
    DELETION_REPORTS,
    AUDIT,
    INGEST_TALLIES,
    ROLLUP_ALERTS,
    PRICE_VERSIONS,
    PRICE_RATES,
    CONNECTORS_CONFIG,
    CONNECTORS_STATE,
    CONNECTORS_USAGE,
    MEMBERS,
    AUDIT_RECORDS,
)


# The topics whose records are sealed under a workspace's data keys: a retired data-key version must outlive
# the longest of their retentions (datakeys.py).
ENVELOPE_TOPICS: tuple[AnyTopic, ...] = (USAGE_EVENTS,)


def topic_name(topic: AnyTopic, prefix: str) -> str:
    return f"{prefix}{topic.name}"
