"""Typed publish and subscribe (in memory), topic provisioning and the replayed compacted table (real broker)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError
from faststream import AckPolicy
from faststream.kafka import TestKafkaBroker

from spendstream.common.erasure import DeletionCommand, ErasureScope
from spendstream.common.kafka import (
    CompactedTable,
    Publisher,
    RawBatch,
    Received,
    make_broker,
    provision_topics,
    subscribe,
    subscribe_batch,
)
from spendstream.common.records import ApiKeyRecord
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import API_KEYS, DELETION_COMMANDS, INGEST_RAW, topic_name
from tests.support import Isolation

integration = pytest.mark.integration
PREFIX = "t."
SECRET = "cust-secret-42"


def _key(key_id: str) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_hash="h", key_id=key_id, workspace_id="ws1", scope="read", created_at=datetime(2026, 1, 1, tzinfo=UTC)
    )


def _command(request_id: str) -> DeletionCommand:
    return DeletionCommand(
        request_id=request_id,
        scope=ErasureScope(workspace_id="ws1", customer_id=SECRET),
        issued_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def test_a_record_that_does_not_parse_is_skipped_and_logged_without_content_and_the_next_is_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = make_broker(BaseServiceSettings(), "test")
    seen: list[Received[DeletionCommand]] = []

    async def handle(record: Received[DeletionCommand]) -> None:
        seen.append(record)

    subscribe(broker, DELETION_COMMANDS, prefix=PREFIX, group="g", handler=handle, ack_policy=AckPolicy.NACK_ON_ERROR)
    name = topic_name(DELETION_COMMANDS, PREFIX)
    with caplog.at_level(logging.ERROR, logger="spendstream.common.kafka"):
        async with TestKafkaBroker(broker) as test:
            await test.publish(f'{{"request_id": "{SECRET}", "scope": 1}}'.encode(), name, key=b"k1")
            await test.publish(b"\xff\x00 not json", name, key=b"k2")
            await Publisher(test, DELETION_COMMANDS, PREFIX).publish(_command("r1"), "r1")
    assert [r.value for r in seen] == [_command("r1")]
    assert (seen[0].key, seen[0].topic, seen[0].partition) == (b"r1", name, 0)
    skipped = [r for r in caplog.records if r.getMessage() == "skipping a record that does not parse"]
    assert [(vars(r)["topic"], vars(r)["reason"]) for r in skipped] == [
        (name, "model_type"),
        (name, "json_invalid"),
    ]
    assert all(isinstance(vars(r)["offset"], int) and isinstance(vars(r)["partition"], int) for r in skipped)
    assert SECRET not in caplog.text and "not json" not in caplog.text


async def test_a_failing_handler_raises_so_the_ack_policy_sees_it() -> None:
    broker = make_broker(BaseServiceSettings(), "test")

    async def handle(record: Received[DeletionCommand]) -> None:
        raise RuntimeError("store down")

    subscribe(broker, DELETION_COMMANDS, prefix=PREFIX, group="g", handler=handle, ack_policy=AckPolicy.NACK_ON_ERROR)
    async with TestKafkaBroker(broker) as test:
        with pytest.raises(RuntimeError, match="store down"):
            await Publisher(test, DELETION_COMMANDS, PREFIX).publish(_command("r1"), "r1")


async def test_a_raw_batch_reaches_its_handler_undecoded_with_coordinates() -> None:
    broker = make_broker(BaseServiceSettings(), "test")
    batches: list[RawBatch] = []

    async def handle(batch: RawBatch) -> None:
        batches.append(batch)

    subscribe_batch(broker, INGEST_RAW, prefix=PREFIX, group="g", handler=handle, ack_policy=AckPolicy.NACK_ON_ERROR)
    async with TestKafkaBroker(broker) as test:
        await Publisher(test, INGEST_RAW, PREFIX).publish(b"\xff anything", "k")
    [batch] = batches
    [record] = batch.records
    assert (record.value, record.key, record.topic) == (b"\xff anything", b"k", topic_name(INGEST_RAW, PREFIX))


@integration
async def test_provisioning_twice_creates_nothing_the_second_time(iso: Isolation) -> None:
    assert await provision_topics(iso.settings(BaseServiceSettings)) == []


@integration
async def test_a_table_replays_history_follows_updates_and_drops_tombstoned_keys(iso: Isolation) -> None:
    settings = iso.settings(BaseServiceSettings)
    broker = make_broker(settings, "test")
    await broker.connect()
    keys = Publisher(broker, API_KEYS, settings.topic_prefix)
    v1, v2 = _key("k1"), _key("k2")
    try:
        await keys.publish(v1, "a")
        await keys.publish(v1, "b")
        await broker.publish(b"not a key record", topic_name(API_KEYS, settings.topic_prefix), key=b"c")
        table: CompactedTable[ApiKeyRecord] = CompactedTable(settings, API_KEYS)
        await table.start()
        try:
            assert (table.get("a"), table.get("b"), table.get("c")) == (v1, v1, None)  # c: skipped, not fatal
            await keys.publish(v2, "a")
            await keys.tombstone("b")
            await table.catch_up()
            assert (table.get("a"), table.get("b")) == (v2, None)
        finally:
            await table.stop()
    finally:
        await broker.stop()


@integration
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
