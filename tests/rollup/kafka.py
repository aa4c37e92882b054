"""What rollup's Kafka tests share: publishing envelopes as ingest would (or poison instead), consumer lag,
reading the dead-letter topic, and counting what ClickHouse holds."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from spendstream.common import crypto, datakeys
from spendstream.common.envelope import BatchEnvelope, _aad, seal
from spendstream.common.events import EncodedBatch, sealed_events
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import DATA_KEYS, ROLLUP_DEAD_LETTERS, USAGE_EVENTS, topic_name
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.reconcile import Reconciler
from tests.support import Isolation, usage_event


class Publisher:
    """Writes to the isolated `usage.events.v1` exactly as ingest does, or writes what ingest never would."""

    def __init__(self, iso: Isolation) -> None:
        self.settings = iso.settings(BaseServiceSettings)
        self.topic = topic_name(USAGE_EVENTS, iso.prefix)
        self.keyring = KeyRing(self.settings)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True
        )

    async def envelope(
        self,
        workspace_id: str,
        events: list[dict[str, Any]],
        ingested_at: datetime | None = None,
        key: bytes | None = None,
    ) -> bytes:
        version = self.keyring.current_version(workspace_id)
        if key is None:
            await self.keyring.table.catch_up()
            version = self.keyring.current_version(workspace_id)
            assert version is not None, "workspace has no data key"
            key = await self.keyring.data_key(workspace_id, version)
            assert key is not None
        batch = EncodedBatch.of(sealed_events(events))
        env = seal(
            batch,
            workspace_id=workspace_id,
            batch_id=uuid.uuid4().hex,
            key=key,
            key_version=version or 1,
            ingested_at=ingested_at or datetime.now(UTC),
        )
        return env.model_dump_json().encode()

    async def invalid_plaintext(self, workspace_id: str, plaintext: bytes) -> bytes:
        """An envelope that decrypts with the right key to something that is not a valid event batch."""
        await self.keyring.table.catch_up()
        version = self.keyring.current_version(workspace_id)
        assert version is not None
        key = await self.keyring.data_key(workspace_id, version)
        assert key is not None
        batch_id = uuid.uuid4().hex
        sealed = crypto.encrypt(key, plaintext, _aad(workspace_id, batch_id, version))
        return (
            BatchEnvelope(
                workspace_id=workspace_id,
                batch_id=batch_id,
                key_version=version,
                ingested_at=datetime.now(UTC),
                event_count=1,
                ciphertext=sealed,
            )
            .model_dump_json()
            .encode()
        )

    async def batch(
        self, workspace_id: str, events: list[dict[str, Any]], partition: int = 0, ingested_at: datetime | None = None
    ) -> None:
        value = await self.envelope(workspace_id, events, ingested_at)
        await self.producer.send_and_wait(self.topic, value, key=workspace_id.encode(), partition=partition)

    async def raw(self, value: bytes, partition: int = 0, key: bytes = b"poison") -> None:
        await self.producer.send_and_wait(self.topic, value, key=key, partition=partition)

    async def shred(self, workspace_id: str) -> None:
        """A tombstone on the data-keys topic: the workspace's only key version is gone (crypto-shredding)."""
        await self.producer.send_and_wait(
            topic_name(DATA_KEYS, self.settings.topic_prefix), None, key=datakeys.record_key(workspace_id, 1).encode()
        )


@asynccontextmanager
async def publisher(iso: Isolation) -> AsyncIterator[Publisher]:
    pub = Publisher(iso)
    await pub.keyring.table.start()
    await pub.producer.start()
    try:
        yield pub
    finally:
        await pub.producer.stop()
        await pub.keyring.table.stop()


def events(n: int, **overrides: Any) -> list[dict[str, Any]]:
    return [usage_event(**overrides) for _ in range(n)]


async def lag(iso: Isolation, group: str = "spendstream-rollup") -> int:
    """Records of usage.events.v1 not yet committed by the consumer group (all partitions)."""
    topic = topic_name(USAGE_EVENTS, iso.prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=iso.stack.kafka)
    consumer = AIOKafkaConsumer(bootstrap_servers=iso.stack.kafka)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(f"{iso.prefix}{group}")
        partitions = [TopicPartition(topic, p) for p in range(USAGE_EVENTS.partitions)]
        ends = await consumer.end_offsets(partitions)
        total = 0
        for tp in partitions:
            done = committed.get(tp)
            total += ends[tp] - (done.offset if done is not None and done.offset >= 0 else 0)
        return total
    finally:
        await consumer.stop()
        await admin.close()


async def dead_letters(iso: Isolation, expected: int, timeout_ms: int = 15_000) -> list[bytes]:
    """The raw dead-letter records, once `expected` of them arrived (or whatever came within the timeout)."""
    tp = TopicPartition(topic_name(ROLLUP_DEAD_LETTERS, iso.prefix), 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=iso.stack.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        deadline = datetime.now(UTC).timestamp() + timeout_ms / 1000
        while len(values) < expected and datetime.now(UTC).timestamp() < deadline:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                values.extend(r.value for r in records)
        # One more short poll: more than `expected` must show up as a failure, not be ignored.
        for records in (await consumer.getmany(tp, timeout_ms=300)).values():
            values.extend(r.value for r in records)
        return values
    finally:
        await consumer.stop()


def reconciler(iso: Isolation) -> Reconciler:
    return Reconciler(clickhouse_client(iso.stack.clickhouse), iso.database)


def scalar(iso: Isolation, sql: str, **parameters: Any) -> Any:
    return clickhouse_client(iso.stack.clickhouse).query(sql, parameters=parameters).result_rows[0][0]


def raw_count(iso: Isolation, workspace_id: str) -> int:
    """Physical rows in usage_events (no FINAL): a duplicate that slipped through shows here."""
    result = clickhouse_client(iso.stack.clickhouse).query(
        f"SELECT count() FROM {iso.database}.usage_events WHERE workspace_id = {{ws:String}}",
        parameters={"ws": workspace_id},
    )
    return int(result.result_rows[0][0])


def rollup_requests(iso: Isolation, workspace_id: str) -> int:
    result = clickhouse_client(iso.stack.clickhouse).query(
        f"SELECT sum(requests) FROM {iso.database}.usage_daily WHERE workspace_id = {{ws:String}}",
        parameters={"ws": workspace_id},
    )
    return int(result.result_rows[0][0] or 0)
