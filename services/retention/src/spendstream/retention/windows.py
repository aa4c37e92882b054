"""Retention windows: what is kept how long, who enforces it, and a check that the brokers agree.

| data                               | kept                       | enforced by                                    |
|------------------------------------|----------------------------|------------------------------------------------|
| raw events, daily rollups (ClickHouse) | 12 months (1-13)       | rollup: table TTLs + `sweeper.Sweeper` (*) |
| monthly quota counters (Redis)     | month + 3 months           | ingest: EXPIREAT on every counter              |
| delivery logs (webhooks, e-mail)   | 30 days                    | alerts: `delivery_log_days`                    |
| raw Kafka topics                   | days (`retention.ms`)      | broker topic configs, checked here             |
| old values of compacted topics     | 1 h (`compaction_bound_seconds`) | topic configs, checked here; the saga |
| a cancelled workspace              | 30 days after cancellation | retention: schedules from `retention.lifecycle.v1` |
(*) a TTL acts only when ClickHouse merges, by the server's clock; the sweeper drops expired partitions and
deletes expired rows now, by an injectable clock.
What a topic's retention leaves behind is unreadable once the tenant's data key is shredded.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import ALL_TOPICS, COMPACTION_BOUND_MS, DAY_MS, AnyTopic, bound_ms, topic_name

# Append-only topics hold tenant data in the clear (routing metadata) or encrypted: none may outlive the
# 30 days the product promises for a deletion.
MAX_DELETE_TOPIC_RETENTION_MS = 30 * DAY_MS
CHECKED = (
    "cleanup.policy",
    "retention.ms",
    "segment.ms",
    "max.compaction.lag.ms",
    "min.cleanable.dirty.ratio",
    "delete.retention.ms",
    "message.timestamp.type",
)


def expected(topic: AnyTopic, compaction_bound_ms: int = COMPACTION_BOUND_MS) -> dict[str, str]:
    return {k: v for k, v in topic.configs(compaction_bound_ms).items() if k in CHECKED}


def policy_problems(topics: tuple[AnyTopic, ...]) -> list[str]:
    """Declared append-only topics that would keep data longer than 30 days."""
    return [
        f"{t.name}: declared retention exceeds 30 days"
        for t in topics
        if t.cleanup == "delete" and (t.retention_ms is None or t.retention_ms > MAX_DELETE_TOPIC_RETENTION_MS)
    ]


async def check_topics(settings: BaseServiceSettings, topics: tuple[AnyTopic, ...] = ALL_TOPICS) -> list[str]:
    """Every way the live topic configs differ from the registry or exceed the policy; empty when all agree."""
    problems = policy_problems(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        for topic in topics:
            name = topic_name(topic, settings.topic_prefix)
            if name not in existing:
                problems.append(f"{name}: missing")
                continue
            response = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
            live = {entry[0]: entry[1] for entry in response[0].resources[0][4]}
            for key, value in expected(topic, bound_ms(settings.compaction_bound_seconds)).items():
                if live.get(key) != value:
                    problems.append(f"{name}: {key} is {live.get(key)!r}, declared {value!r}")
    finally:
        await admin.close()
    return problems
