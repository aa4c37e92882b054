"""Durability of accepting a batch: 202 only after Kafka's ack; with the broker down, 503 and nothing counted;
after it is back, resending the same batch stores every event exactly once."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from unittest.mock import patch

import pytest
import redis.asyncio as aioredis
from aiokafka.errors import KafkaTimeoutError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from spendstream.common import crypto
from spendstream.common.envelope import BatchEnvelope, open_plaintext, stored_events
from spendstream.common.kafka import make_broker, provision_topics
from spendstream.common.records import IngestTally
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import INGEST_TALLIES, USAGE_EVENTS, topic_name
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.batches import BatchAcceptor, PublishFailed
from spendstream.ingest.dedupe import Deduplicator
from spendstream.ingest.limits import Limiter, month_key
from spendstream.ingest.settings import IngestSettings
from spendstream.ingest.workspaces import ControlPlane
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.settings import RollupSettings
from tests.support import Isolation, PrivateKafka, auth, eventually, serving, usage_event


@pytest.mark.integration
@pytest.mark.slow
async def test_broker_down_gives_503_counts_nothing_and_a_resend_after_restart_stores_each_event_once(
    iso: Isolation, private_kafka: PrivateKafka
) -> None:
    base = iso.settings(BaseServiceSettings, kafka_bootstrap_servers=private_kafka.bootstrap)
    await provision_topics(base)
    broker = make_broker(base, "tests")
    await broker.connect()
    try:
        workspace, keys = await ControlPlane(base, broker).create_workspace("durable", "team")
    finally:
        await broker.stop()
    key = {k.scope: k.key for k in keys}
    ws_id = workspace.workspace_id
    batch = {"events": [usage_event(cost_usd=1.25), usage_event(cost_usd=2.5)]}
    ingest = create_ingest(
        iso.settings(IngestSettings, kafka_bootstrap_servers=private_kafka.bootstrap, publish_timeout_seconds=3)
    )
    rollup = create_rollup(iso.settings(RollupSettings, kafka_bootstrap_servers=private_kafka.bootstrap))
    redis = aioredis.Redis.from_url(iso.stack.redis)
    try:
        async with serving([ingest, rollup]) as client:
            private_kafka.stop()
            down = await client.post("/v1/events", json=batch, headers=auth(key["ingest"]))
            assert (down.status_code, down.json()["error"]) == (503, "unavailable")
            assert down.headers["Retry-After"]
            # Nothing counted: no quota used, no event_id remembered (the retry must not be a "duplicate").
            quota = f"{iso.prefix}ingest:quota:{{{ws_id}}}:{month_key(datetime.now(UTC))}"
            assert int(await redis.get(quota) or 0) == 0
            assert not await redis.keys(f"{iso.prefix}ingest:seen:*")

            private_kafka.start()

            async def resent() -> dict[str, Any] | None:
                r = await client.post("/v1/events", json=batch, headers=auth(key["ingest"]))
                return dict(r.json()) if r.status_code == 202 else None

            first = await eventually(resent, timeout=60, interval=1)
            assert first["accepted"] + first["duplicates"] == 2
            again = await client.post("/v1/events", json=batch, headers=auth(key["ingest"]))
            assert again.json() == {"accepted": 0, "duplicates": 2, "rejected": []}
            assert int(await redis.get(quota) or 0) == first["accepted"]

            async def stored() -> dict[str, Any] | None:
                r = await client.get("/v1/usage", headers=auth(key["read"]))
                totals: dict[str, Any] = r.json()["totals"]
                return totals if totals["requests"] >= 2 else None

            totals = await eventually(stored, timeout=60, interval=0.5)
    finally:
        await redis.aclose()
    # The failed publish may still have reached the broker late; rollup's (workspace, event_id) dedupe makes
    # that copy and the resent one a single stored event each.
    assert (totals["requests"], totals["cost_usd"]) == (2, "3.750000000")


class _Keys:
    """A key ring holding one workspace's freshly made data key (the in-memory tier has no compacted topics)."""

    def __init__(self, workspace_id: str) -> None:
        self.kek = os.urandom(32)
        self.record = crypto.new_version(workspace_id, 1, self.kek, "test")

    def current_version(self, workspace_id: str) -> int | None:
        return 1 if workspace_id == self.record.workspace_id else None

    async def data_key(self, workspace_id: str, version: int) -> bytes | None:
        return crypto.unwrap_version(self.record, self.kek) if version == 1 else None


def _acceptor(broker: KafkaBroker, redis: aioredis.Redis, prefix: str, keys: _Keys) -> BatchAcceptor:
    return BatchAcceptor(
        broker=broker,
        keyring=cast(KeyRing, keys),
        dedupe=Deduplicator(redis, prefix, 3600),
        limiter=Limiter(redis, prefix, 1000, 1000),
        topic_prefix=prefix,
        max_age=timedelta(days=30),
        publish_timeout=5,
    )


async def test_in_memory_accepted_batch_is_one_envelope_and_its_ids_are_marked_after_the_ack(iso: Isolation) -> None:
    broker = KafkaBroker()
    envelopes: list[bytes] = []

    @broker.subscriber(topic_name(USAGE_EVENTS, iso.prefix), ack_policy=AckPolicy.ACK)
    async def sink(msg: KafkaMessage) -> None:
        envelopes.append(msg.body)

    redis = aioredis.Redis.from_url(iso.stack.redis)
    keys = _Keys("ws_mem")
    try:
        async with TestKafkaBroker(broker):
            acceptor = _acceptor(broker, redis, iso.prefix, keys)
            events = [usage_event(), usage_event(), usage_event(prompt="x")]
            result = await acceptor.accept("ws_mem", events, "http", quota=10)
            again = await acceptor.accept("ws_mem", events[:2], "http", quota=10)
        assert (result.accepted, result.duplicates, [r.code for r in result.rejected]) == (2, 0, ["content_field"])
        assert (again.accepted, again.duplicates) == (0, 2)
        (raw,) = envelopes
        envelope = BatchEnvelope.model_validate_json(raw)
        sealed, _ = stored_events(open_plaintext(envelope, await keys.data_key("ws_mem", 1) or b""))
        assert [e.event_id for e in sealed] == [events[0]["event_id"], events[1]["event_id"]]
    finally:
        await redis.aclose()


async def test_in_memory_failed_publish_marks_nothing_and_gives_the_quota_back(iso: Isolation) -> None:
    broker = KafkaBroker()
    redis = aioredis.Redis.from_url(iso.stack.redis)
    try:
        async with TestKafkaBroker(broker):
            acceptor = _acceptor(broker, redis, iso.prefix, _Keys("ws_mem"))
            events = [usage_event(), usage_event()]
            with patch.object(broker, "publish", side_effect=KafkaTimeoutError()), pytest.raises(PublishFailed):
                await acceptor.accept("ws_mem", events, "http", quota=10)
            quota = f"{iso.prefix}ingest:quota:{{ws_mem}}:{month_key(datetime.now(UTC))}"
            assert int(await redis.get(quota) or 0) == 0
            retried = await acceptor.accept("ws_mem", events, "http", quota=10)
        assert (retried.accepted, retried.duplicates) == (2, 0)
        assert int(await redis.get(quota) or 0) == 2
    finally:
        await redis.aclose()


async def test_in_memory_each_acknowledged_envelope_has_a_tally_of_its_events_per_day(iso: Isolation) -> None:
    broker = KafkaBroker()
    tallies: list[IngestTally] = []
    envelopes: list[BatchEnvelope] = []

    @broker.subscriber(topic_name(INGEST_TALLIES, iso.prefix), ack_policy=AckPolicy.ACK)
    async def tally_sink(msg: KafkaMessage) -> None:
        tallies.append(IngestTally.model_validate_json(msg.body))

    @broker.subscriber(topic_name(USAGE_EVENTS, iso.prefix), ack_policy=AckPolicy.ACK)
    async def sink(msg: KafkaMessage) -> None:
        envelopes.append(BatchEnvelope.model_validate_json(msg.body))

    redis = aioredis.Redis.from_url(iso.stack.redis)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    try:
        async with TestKafkaBroker(broker):
            acceptor = _acceptor(broker, redis, iso.prefix, _Keys("ws_mem"))
            events = [usage_event(), usage_event(), usage_event(timestamp=yesterday.isoformat())]
            await acceptor.accept("ws_mem", [*events, usage_event(prompt="refused")], "http", quota=10)
            await acceptor.accept("ws_mem", events, "http", quota=10)  # duplicates: no envelope, no tally
    finally:
        await redis.aclose()
    (envelope,) = envelopes
    (tally,) = tallies
    assert (tally.workspace_id, tally.batch_id, tally.at) == ("ws_mem", envelope.batch_id, envelope.ingested_at)
    assert tally.days == {datetime.now(UTC).date(): 2, yesterday.date(): 1}


async def test_in_memory_a_tally_that_is_not_acknowledged_leaves_the_batch_unaccepted(iso: Isolation) -> None:
    broker = KafkaBroker()
    redis = aioredis.Redis.from_url(iso.stack.redis)
    tallies = topic_name(INGEST_TALLIES, iso.prefix)
    try:
        async with TestKafkaBroker(broker):
            publish = broker.publish

            async def tallies_down(message: Any, topic: str, **kwargs: Any) -> Any:
                if topic == tallies:
                    raise KafkaTimeoutError()
                return await publish(message, topic, **kwargs)

            acceptor = _acceptor(broker, redis, iso.prefix, _Keys("ws_mem"))
            events = [usage_event(), usage_event()]
            with patch.object(broker, "publish", side_effect=tallies_down), pytest.raises(PublishFailed):
                await acceptor.accept("ws_mem", events, "http", quota=10)
            quota = f"{iso.prefix}ingest:quota:{{ws_mem}}:{month_key(datetime.now(UTC))}"
            assert int(await redis.get(quota) or 0) == 0
            # Not remembered either: the retry sends the events again, with their tally this time.
            retried = await acceptor.accept("ws_mem", events, "http", quota=10)
        assert (retried.accepted, retried.duplicates) == (2, 0)
    finally:
        await redis.aclose()
