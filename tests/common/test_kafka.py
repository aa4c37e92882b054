"""Topic provisioning and the compacted-topic table every service replays (real broker)."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError
from faststream import AckPolicy

from spendstream.common.kafka import CompactedTable, make_broker, provision_topics
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import API_KEYS, topic_name
from tests.support import Isolation

pytestmark = pytest.mark.integration


async def test_provisioning_twice_creates_nothing_the_second_time(iso: Isolation) -> None:
    assert await provision_topics(iso.settings(BaseServiceSettings)) == []


async def test_a_table_replays_history_follows_updates_and_drops_tombstoned_keys(iso: Isolation) -> None:
    settings = iso.settings(BaseServiceSettings)
    broker = make_broker(settings, "test")
    await broker.connect()
    topic = topic_name(API_KEYS, settings.topic_prefix)
    try:
        await broker.publish(b"v1", topic, key=b"a")
        await broker.publish(b"v1", topic, key=b"b")
        table: CompactedTable[bytes] = CompactedTable(settings, API_KEYS, lambda raw: raw)
        await table.start()
        try:
            assert (table.get("a"), table.get("b")) == (b"v1", b"v1")
            await broker.publish(b"v2", topic, key=b"a")
            await broker.publish(None, topic, key=b"b")
            await table.catch_up()
            assert (table.get("a"), table.get("b")) == (b"v2", None)
        finally:
            await table.stop()
    finally:
        await broker.stop()


async def test_a_subscriber_on_a_missing_topic_fails_to_start_and_creates_nothing(iso: Isolation) -> None:
    settings = iso.settings(BaseServiceSettings)
    broker = make_broker(settings, "test")
    missing = f"{settings.topic_prefix}usage.evnets.v1"  # a typo, as an operator would make it

    @broker.subscriber(missing, group_id=f"{settings.topic_prefix}g", ack_policy=AckPolicy.NACK_ON_ERROR)
    async def handle(body: bytes) -> None:
        raise AssertionError("nothing can arrive on a topic that does not exist")

    try:
        with pytest.raises(UnknownTopicOrPartitionError):  # the service's start fails: the pod restarts, loudly
            await broker.start()
    finally:
        await broker.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        assert missing not in await admin.list_topics()
    finally:
        await admin.close()
