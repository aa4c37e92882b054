"""The retention-window check: live topic configs against the registry and the 30-day ceiling."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import ALL_TOPICS, DATA_KEYS, DAY_MS, RAW, USAGE_EVENTS, Topic, bound_ms, topic_name
from spendstream.retention.windows import check_topics, policy_problems
from tests.support import Isolation, eventually


async def test_provisioned_topics_pass_and_a_topic_kept_too_long_is_reported(iso: Isolation) -> None:
    settings = iso.settings(BaseServiceSettings)
    assert await check_topics(settings) == []
    admin = AIOKafkaAdminClient(bootstrap_servers=iso.stack.kafka)
    await admin.start()
    try:
        name = topic_name(USAGE_EVENTS, iso.prefix)
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    name,
                    {**USAGE_EVENTS.configs(), "retention.ms": str(90 * 24 * 3600 * 1000)},
                )
            ]
        )
    finally:
        await admin.close()

    async def drift() -> list[str]:  # an altered config reaches describe_configs a moment later
        return await check_topics(settings)

    assert await eventually(drift) == [f"{name}: retention.ms is '7776000000', declared '604800000'"]


def test_a_delete_topic_declared_beyond_30_days_is_a_policy_problem() -> None:
    assert policy_problems(ALL_TOPICS) == []
    long_lived = Topic("x.y.v1", "p", ("c",), RAW, "k", partitions=1, retention_ms=31 * DAY_MS, cleanup="delete")
    assert policy_problems((long_lived,)) == ["x.y.v1: declared retention exceeds 30 days"]


async def test_a_compacted_topic_with_day_long_segments_is_drift(iso: Isolation) -> None:
    # A topic created before the compaction bound: its tombstoned data keys would stay readable for a day.
    settings = iso.settings(BaseServiceSettings)
    name = topic_name(DATA_KEYS, iso.prefix)
    declared = DATA_KEYS.configs(bound_ms(settings.compaction_bound_seconds))
    admin = AIOKafkaAdminClient(bootstrap_servers=iso.stack.kafka)
    await admin.start()
    try:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, {**declared, "segment.ms": str(DAY_MS)})]
        )
    finally:
        await admin.close()

    async def drift() -> list[str]:
        return await check_topics(settings)

    assert await eventually(drift) == [f"{name}: segment.ms is '{DAY_MS}', declared '{declared['segment.ms']}'"]
