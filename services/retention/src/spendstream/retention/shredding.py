"""Crypto-shredding made true: no readable record of an erased subject left on the compacted topics.

Owners tombstone a workspace's data key, API keys, budgets and connectors (their sealed provider admin keys
and cursors), and blank its workspace record; until the
broker compacts, the old values still sit in the log, and whoever holds the KEK could unwrap the data key and
open every envelope of the workspace. `leftovers` reads each compacted topic holding tenant keys or content
from the earliest offset and lists every record of the subject that is neither a tombstone nor the workspace's
`deleted` marker. Ownership is found generically (the workspace id in the record's key or value; ids are
`ws_` and 32 hex digits, so one never contains another), so it holds whatever the per-topic record layout is.

`nudge` re-writes the latest record (a tombstone, or the marker) of each key that still has old values: the
cleaner never touches the active segment, and a segment rolls only on an append, so without a later write a
quiet topic would keep the tombstoned value in its active segment indefinitely. Consumers already applied
that same record once, so a repeat changes nothing for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker

from spendstream.common.erasure import OWNERS, Owner
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import (
    API_KEYS,
    BUDGETS,
    CONNECTORS_CONFIG,
    CONNECTORS_STATE,
    DATA_KEYS,
    WORKSPACES,
    AnyTopic,
    topic_name,
)

# Every compacted topic whose values hold a tenant's keys or content.
TENANT_TOPICS: tuple[AnyTopic, ...] = (DATA_KEYS, API_KEYS, WORKSPACES, BUDGETS)
# Those of an owner an installation may leave out: read only where that owner runs (nobody else writes them).
OWNER_TOPICS: dict[Owner, tuple[AnyTopic, ...]] = {"connectors": (CONNECTORS_CONFIG, CONNECTORS_STATE)}
# A customer's content sits only in budgets scoped to it.
CUSTOMER_TOPICS: tuple[AnyTopic, ...] = (BUDGETS,)


@dataclass
class Leftovers:
    """What a read of the topics found: readable old records per topic, and the keys a nudge may roll past."""

    topics: list[str]
    records: dict[str, int] = field(default_factory=dict)  # topic name -> readable records of the subject
    nudges: dict[str, dict[bytes, bytes | None]] = field(default_factory=dict)  # topic -> key -> latest value

    @property
    def total(self) -> int:
        return sum(self.records.values())


def _json(value: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):  # anyone may write to the topic: garbage, or nesting past the stack
        return None
    return parsed if isinstance(parsed, dict) else None


def _owned_key(key: bytes | None, workspace_id: bytes) -> bool:
    # A key naming the workspace: the id itself or the id followed by a separator (`<ws>/<version>`).
    return key is not None and (
        key == workspace_id or (key.startswith(workspace_id) and not key[len(workspace_id) :][:1].isalnum())
    )


def _owned(key: bytes | None, value: bytes, workspace_id: str, customer_id: str | None) -> bool:
    if customer_id is None:
        return _owned_key(key, workspace_id.encode()) or workspace_id.encode() in value
    record = _json(value)
    scope = record.get("scope") if record is not None else None
    return (
        record is not None
        and record.get("workspace_id") == workspace_id
        and isinstance(scope, dict)
        and scope.get("tag") == "customer_id"
        and scope.get("value") == customer_id
    )


def _harmless(topic: AnyTopic, value: bytes) -> bool:
    """The one non-tombstone record an erased workspace keeps: its `deleted` marker, name blanked."""
    if topic is not WORKSPACES:
        return False
    record = _json(value)
    return record is not None and record.get("status") == "deleted" and record.get("name") == ""


async def _read(consumer: AIOKafkaConsumer, topic: AnyTopic, name: str) -> list[tuple[bytes | None, bytes | None]]:
    tps = [TopicPartition(name, p) for p in range(topic.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    records: list[tuple[bytes | None, bytes | None]] = []
    while not all([await consumer.position(tp) >= ends[tp] for tp in tps]):
        batch = await consumer.getmany(*tps, timeout_ms=500)
        records += [(r.key, r.value) for rs in batch.values() for r in rs]
    return records


def tenant_topics(owners: tuple[Owner, ...] = OWNERS) -> tuple[AnyTopic, ...]:
    """The compacted topics holding a workspace's keys or content, in an installation running `owners`."""
    return TENANT_TOPICS + tuple(t for o in owners for t in OWNER_TOPICS.get(o, ()))


async def leftovers(
    settings: BaseServiceSettings, workspace_id: str, customer_id: str | None, owners: tuple[Owner, ...] = OWNERS
) -> Leftovers:
    """Read the subject's compacted topics from the earliest offset; count what of it is still readable."""
    topics = tenant_topics(owners) if customer_id is None else CUSTOMER_TOPICS
    found = Leftovers(topics=[topic_name(t, settings.topic_prefix) for t in topics])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        for topic in topics:
            name = topic_name(topic, settings.topic_prefix)
            records = await _read(consumer, topic, name)
            latest: dict[bytes, bytes | None] = {}
            stale: set[bytes] = set()
            count = 0
            for key, value in records:
                if key is not None:
                    latest[key] = value
                if value is None or not _owned(key, value, workspace_id, customer_id) or _harmless(topic, value):
                    continue
                count += 1
                if key is not None:
                    stale.add(key)
            found.records[name] = count
            # Only keys whose latest record is itself no content: a live value is an owner's miss, never rolled
            # past (and never rewritten by retention).
            rollable = {k: latest[k] for k in stale if latest[k] is None or _harmless(topic, latest[k] or b"")}
            if rollable:
                found.nudges[name] = rollable
    finally:
        await consumer.stop()
    return found


async def nudge(broker: KafkaBroker, found: Leftovers) -> None:
    """Append the latest record of each key with old values again, so that the segment holding them rolls."""
    for name, keys in found.nudges.items():
        for key, value in sorted(keys.items()):
            await broker.publish(value, name, key=key)
