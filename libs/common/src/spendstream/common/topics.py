"""Every Kafka topic, declared once: who produces it, who consumes it, what it holds and how long.

Topics are provisioned explicitly (`spendstream topics create`); broker auto-creation stays off so a typo fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    producer: str
    consumers: tuple[str, ...]
    schema: str
    partitions: int
    retention_ms: int | None  # None: kept until compacted away (compacted topics)
    cleanup: Literal["delete", "compact"]
    # LogAppendTime: the broker stamps records on arrival, so retention counts from ingestion, never from a
    # client's back-dated event time (openmeter #5005 lost back-dated events that way).
    timestamp_type: Literal["CreateTime", "LogAppendTime"] = "CreateTime"
    extra: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        cfg: dict[str, str] = {"cleanup.policy": self.cleanup, "message.timestamp.type": self.timestamp_type}
        if self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
            # Retention deletes whole segments; a day-long segment bounds how long data outlives retention.
            cfg["segment.ms"] = str(min(self.retention_ms, DAY_MS))
        if self.cleanup == "compact":
            # Bound how long a superseded or tombstoned value may linger (erasure of keys and records).
            cfg.update(
                {
                    "segment.ms": str(DAY_MS),
                    "max.compaction.lag.ms": str(DAY_MS),
                    "delete.retention.ms": str(7 * DAY_MS),
                    "min.cleanable.dirty.ratio": "0.1",
                }
            )
        cfg.update(self.extra)
        return cfg


USAGE_EVENTS = Topic(
    "usage.events.v1",
    "ingest",
    ("rollup", "alerts"),
    "spendstream.common.envelope.BatchEnvelope (JSON; events AES-256-GCM encrypted with the workspace data key)",
    partitions=6,
    retention_ms=7 * DAY_MS,
    cleanup="delete",
    timestamp_type="LogAppendTime",
)
INGEST_RAW = Topic(
    "ingest.raw.v1",
    "external producers",
    ("ingest",),
    "JSON {events:[RequestEvent]} with header x-api-key (an ingest key); untrusted",
    partitions=6,
    retention_ms=3 * DAY_MS,
    cleanup="delete",
    timestamp_type="LogAppendTime",
)
INGEST_REJECTED = Topic(
    "ingest.rejected.v1",
    "ingest",
    ("operators",),
    "spendstream.common.records.RejectionRecord (content-free)",
    partitions=1,
    retention_ms=7 * DAY_MS,
    cleanup="delete",
)
WORKSPACES = Topic(
    "ingest.workspaces.v1",
    "ingest",
    ("ingest", "retention"),
    "spendstream.common.tenants.WorkspaceRecord keyed by workspace_id",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
API_KEYS = Topic(
    "ingest.apikeys.v1",
    "ingest",
    ("ingest", "rollup", "alerts", "retention"),
    "spendstream.common.tenants.ApiKeyRecord keyed by the key's SHA-256",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
DATA_KEYS = Topic(
    "ingest.datakeys.v1",
    "ingest",
    ("ingest", "rollup", "alerts"),
    "spendstream.common.crypto.WrappedKeySet keyed by workspace_id; a tombstone crypto-shreds the workspace",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
ROLLUP_DEAD_LETTERS = Topic(
    "rollup.deadletter.v1",
    "rollup",
    ("operators",),
    "spendstream.common.records.DeadLetter: the original record's coordinates and a reason code, no payload",
    partitions=1,
    retention_ms=14 * DAY_MS,
    cleanup="delete",
)
BUDGETS = Topic(
    "alerts.budgets.v1",
    "alerts",
    ("alerts",),
    "budget records keyed by budget id",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
ALERTS_FIRED = Topic(
    "alerts.fired.v1",
    "alerts",
    ("webhooks", "e-mail", "external"),
    "fired alert records",
    partitions=3,
    retention_ms=30 * DAY_MS,
    cleanup="delete",
)
LIFECYCLE = Topic(
    "retention.lifecycle.v1",
    "ingest / billing",
    ("retention",),
    "account lifecycle events keyed by workspace_id",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
DELETION_REQUESTS = Topic(
    "retention.requests.v1",
    "retention / compliance tools",
    ("retention",),
    "deletion requests and their state keyed by request id",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)
DELETION_COMMANDS = Topic(
    "retention.commands.v1",
    "retention",
    ("ingest", "rollup", "alerts"),
    "deletion commands to the data owners",
    partitions=1,
    retention_ms=30 * DAY_MS,
    cleanup="delete",
)
DELETION_REPORTS = Topic(
    "retention.reports.v1",
    "ingest / rollup / alerts",
    ("retention",),
    "owners' deletion reports (counts before/after, verification)",
    partitions=1,
    retention_ms=30 * DAY_MS,
    cleanup="delete",
)
AUDIT = Topic(
    "audit.receipts.v1",
    "retention",
    ("compliance",),
    "deletion receipts, no personal data",
    partitions=1,
    retention_ms=None,
    cleanup="compact",
)

ALL_TOPICS: tuple[Topic, ...] = (
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
)


def topic_name(topic: Topic, prefix: str) -> str:
    return f"{prefix}{topic.name}"
