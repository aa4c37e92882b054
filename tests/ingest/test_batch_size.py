"""Every batch the README allows is storable: at the documented maxima (500 events, a 1 MiB body, 5 MiB once
gzip-inflated; a 1 MiB raw record) the sealed batch travels as envelopes Kafka can hold, every event is stored in
ClickHouse once, and a record that can never be published is rejected instead of coming back forever."""

from __future__ import annotations

import gzip
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from spendstream.alerts.keyspace import ALL
from spendstream.alerts.spend import CountedRecord
from spendstream.common.envelope import BatchEnvelope, open_plaintext, read_record, stored_events
from spendstream.common.records import IngestTally, RejectionRecord
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import INGEST_RAW, INGEST_REJECTED, INGEST_TALLIES, USAGE_EVENTS, topic_name
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.batches import ENVELOPE_MAX_BYTES, BatchAcceptor, PublishFailed
from spendstream.ingest.dedupe import Deduplicator
from spendstream.ingest.limits import Limiter, month_key
from spendstream.ingest.settings import IngestSettings
from spendstream.ingest.topic_room import NEEDED_BYTES, TopicTooSmall
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.settings import RollupSettings
from tests.alerts.helpers import rig
from tests.ingest.fakes import FakeKeyRing
from tests.ingest.topics import read_all
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
# Letters no detector of the privacy guard reads as content (no digits, no `@`, nothing hex), which LZ4 barely
# compresses: the sealed plaintext stays as large as the body.
_LETTERS = "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ"
# Three-byte characters from a small alphabet: gzip packs 5 MiB of them into less than 1 MiB, LZ4 into ~2 MiB.
_WIDE = "€₤₩₪₫₭₮₯"
_KEYS = [f"dim{i:02d}" + "x" * 59 for i in range(24)]  # 24 tags of 64-character keys: the most an event may carry
# Random tag keys (for bodies nothing may compress) of consonants: no word the guard reads as content.
_CONSONANTS = "bcdfghjklmnpqrstvwxz"


def _fill(events: list[dict[str, Any]], target: int, alphabet: str, rng: random.Random, random_keys: bool) -> bytes:
    """The batch's JSON with 24 tags per event filled so that it is exactly `target` bytes long."""
    for event in events:
        keys = ["".join(rng.choices(_CONSONANTS, k=16)) for _ in _KEYS] if random_keys else _KEYS
        event["tags"] = {key: "".join(rng.choices(alphabet, k=120)) for key in keys}
    body = orjson.dumps({"events": events})
    # Too long by now: shorten values from the last event backwards, then pad one with ASCII to the byte.
    values = [(event["tags"], key) for event in reversed(events) for key in reversed(event["tags"])]
    excess = len(body) - target
    assert excess >= 0, "the events cannot reach the target size"
    for tags, key in values:
        if excess <= 0:
            break
        width = len(tags[key][0].encode())
        cut = min(len(tags[key]), -(-excess // width))
        tags[key] = tags[key][: len(tags[key]) - cut]
        excess -= cut * width
    tags, key = values[0]
    tags[key] += "g" * -excess
    body = orjson.dumps({"events": events})
    assert len(body) == target
    return body


def _events(count: int) -> list[dict[str, Any]]:
    return [usage_event(cost_usd=0.25) for _ in range(count)]


def _plain(count: int) -> Callable[[random.Random], tuple[bytes, bytes]]:
    def make(rng: random.Random) -> tuple[bytes, bytes]:
        body = _fill(_events(count), MiB, _LETTERS, rng, random_keys=True)
        return body, body

    return make


def _gzipped(rng: random.Random) -> tuple[bytes, bytes]:
    inflated = _fill(_events(500), 5 * MiB, _WIDE, rng, random_keys=False)
    sent = gzip.compress(inflated)
    assert len(sent) <= MiB
    return inflated, sent


MAXIMA = {
    "500 events, 1 MiB": _plain(500),
    "300 events, 1 MiB": _plain(300),
    "500 events, gzip 5 MiB inflated": _gzipped,
}


async def _envelopes(iso: Isolation, count: int) -> list[Any]:
    async def published() -> list[Any] | None:
        found = await read_all(iso.stack.kafka, topic_name(USAGE_EVENTS, iso.prefix))
        total = sum(BatchEnvelope.model_validate_json(r.value).event_count for r in found)
        return found if total >= count else None

    return await eventually(published, timeout=60)


def _stored(iso: Isolation, workspace_id: str) -> tuple[int, set[str]]:
    ch = clickhouse_client(iso.stack.clickhouse)
    rows = ch.query(
        f"SELECT event_id FROM {iso.database}.usage_events WHERE workspace_id = {{ws:String}}",
        parameters={"ws": workspace_id},
    ).result_rows
    return len(rows), {row[0] for row in rows}


def _check_envelopes(records: list[Any], ids: set[str], workspace_id: str) -> list[int]:
    sizes = [len(r.value) for r in records]
    assert all(size <= ENVELOPE_MAX_BYTES for size in sizes), sizes
    assert {r.key for r in records} == {workspace_id.encode()}
    assert sum(BatchEnvelope.model_validate_json(r.value).event_count for r in records) == len(ids)
    return sizes


@pytest.mark.slow
@pytest.mark.parametrize("make", list(MAXIMA.values()), ids=list(MAXIMA))
async def test_the_largest_allowed_http_batch_is_accepted_and_each_event_stored_once(
    iso: Isolation, make: Callable[[random.Random], tuple[bytes, bytes]]
) -> None:
    ws = await create_workspace(iso)
    inflated, sent = make(random.Random(7))
    ids = {e["event_id"] for e in orjson.loads(inflated)["events"]}
    headers = {**auth(ws["ingest"]), "Content-Type": "application/json"}
    if sent is not inflated:
        headers["Content-Encoding"] = "gzip"
    ingest = create_ingest(iso.settings(IngestSettings))
    rollup = create_rollup(iso.settings(RollupSettings))
    async with serving([ingest, rollup]) as client:
        response = await client.post("/v1/events", content=sent, headers=headers)
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": len(ids), "duplicates": 0, "rejected": []}
        _check_envelopes(await _envelopes(iso, len(ids)), ids, ws["workspace_id"])

        async def stored() -> tuple[int, set[str]] | None:
            found = _stored(iso, ws["workspace_id"])
            return found if found[0] >= len(ids) else None

        count, stored_ids = await eventually(stored, timeout=60, interval=0.5)
        again = await client.post("/v1/events", content=sent, headers=headers)
        assert again.json() == {"accepted": 0, "duplicates": len(ids), "rejected": []}
    assert (count, stored_ids) == (len(ids), ids)


@pytest.mark.parametrize("count", [500, 300])
async def test_the_largest_allowed_raw_record_is_forwarded(iso: Isolation, count: int) -> None:
    ws = await create_workspace(iso)
    body = _fill(_events(count), MiB, _LETTERS, random.Random(count), random_keys=True)
    ids = {e["event_id"] for e in orjson.loads(body)["events"]}
    async with serving([create_ingest(iso.settings(IngestSettings))]):
        # Uncompressed, as any producer may send it: the raw topic must hold a record at the documented maximum.
        producer = AIOKafkaProducer(bootstrap_servers=iso.stack.kafka, max_request_size=4 * MiB)
        await producer.start()
        try:
            await producer.send_and_wait(
                topic_name(INGEST_RAW, iso.prefix), body, headers=[("x-api-key", ws["ingest"].encode())]
            )
        finally:
            await producer.stop()
        _check_envelopes(await _envelopes(iso, len(ids)), ids, ws["workspace_id"])
    assert await read_all(iso.stack.kafka, topic_name(INGEST_REJECTED, iso.prefix)) == []


async def _set_max_message_bytes(iso: Isolation, value: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=iso.stack.kafka)
    await admin.start()
    try:
        # AlterConfigs replaces the topic's whole config: the declared one goes along.
        configs = {**USAGE_EVENTS.configs(), "max.message.bytes": str(value)}
        resource = ConfigResource(ConfigResourceType.TOPIC, topic_name(USAGE_EVENTS, iso.prefix), configs)
        await admin.alter_configs([resource])
    finally:
        await admin.close()


async def test_a_raw_record_the_broker_can_never_hold_is_rejected_and_the_intake_moves_on(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    key = [("x-api-key", ws["ingest"].encode())]
    large = orjson.dumps({"events": _events(500)})  # ~29 KB sealed: more than the topic below holds
    small = orjson.dumps({"events": _events(1)})
    raw_topic = topic_name(INGEST_RAW, iso.prefix)
    async with serving([create_ingest(iso.settings(IngestSettings))]):
        # An operator shrinks the topic's limit after ingest started (its startup check passed): every envelope
        # of the large record is refused by the broker for good, and a retry would be refused the same way.
        await _set_max_message_bytes(iso, 20_000)
        producer = AIOKafkaProducer(bootstrap_servers=iso.stack.kafka)
        await producer.start()
        try:
            await producer.send_and_wait(raw_topic, large, headers=key, partition=0)
            await producer.send_and_wait(raw_topic, small, headers=key, partition=0)
        finally:
            await producer.stop()

        async def rejections() -> list[Any] | None:
            return await read_all(iso.stack.kafka, topic_name(INGEST_REJECTED, iso.prefix)) or None

        rejected = await eventually(rejections, timeout=60)
        forwarded = await _envelopes(iso, 1)
    parsed = [RejectionRecord.model_validate_json(r.value) for r in rejected]
    assert {(p.source_offset, p.index, p.field, p.code, p.workspace_id) for p in parsed} == {
        (0, None, "", "unpublishable", ws["workspace_id"])
    }
    assert [BatchEnvelope.model_validate_json(r.value).event_count for r in forwarded] == [1]


class _Broker:
    """Acknowledges every envelope but the `fail_at`-th (counted from 0), which raises `error`; keeps the
    tallies apart (always acknowledged)."""

    def __init__(self, fail_at: int | None = None, error: Exception | None = None) -> None:
        self.records: list[bytes] = []
        self.tallies: list[IngestTally] = []
        self._fail_at, self._error, self._calls = fail_at, error, 0

    async def publish(
        self, message: bytes, topic: str, *, key: bytes | None = None, headers: dict[str, str] | None = None
    ) -> None:
        if topic.endswith(INGEST_TALLIES.name):
            self.tallies.append(IngestTally.model_validate_json(message))
            return
        call, self._calls = self._calls, self._calls + 1
        if call == self._fail_at and self._error is not None:
            raise self._error
        self.records.append(message)


def _acceptor(broker: _Broker, redis: aioredis.Redis, prefix: str, keys: FakeKeyRing) -> BatchAcceptor:
    return BatchAcceptor(
        broker=broker,
        keyring=cast(KeyRing, keys),
        dedupe=Deduplicator(redis, prefix, 3600),
        limiter=Limiter(redis, prefix, 100_000, 100_000),
        topic_prefix=prefix,
        max_age=timedelta(days=30),
        publish_timeout=5,
    )


async def _sealed_ids(records: list[bytes], keys: FakeKeyRing) -> list[str]:
    ids: list[str] = []
    for record in records:
        envelope = BatchEnvelope.model_validate_json(record)
        events, _ = stored_events(open_plaintext(envelope, await keys.data_key(envelope.workspace_id, 1) or b""))
        ids.extend(e.event_id for e in events)
    return ids


async def test_a_usual_batch_is_one_envelope_and_a_split_batch_is_accepted_whole_or_not_at_all(iso: Isolation) -> None:
    keys = FakeKeyRing("ws_big")
    redis = aioredis.Redis.from_url(iso.stack.redis)
    quota = f"{iso.prefix}ingest:quota:{{ws_big}}:{month_key(datetime.now(UTC))}"
    try:
        usual = _Broker()
        small = _events(500)
        result = await _acceptor(usual, redis, iso.prefix, keys).accept("ws_big", small, "http", quota=10_000)
        assert result.accepted == 500
        assert len(usual.records) == 1
        assert await _sealed_ids(usual.records, keys) == [e["event_id"] for e in small]

        large = orjson.loads(_fill(_events(500), MiB, _LETTERS, random.Random(3), random_keys=True))["events"]
        ids = [e["event_id"] for e in large]
        # The second envelope is not acknowledged: the batch is not accepted. The first is on the log for good,
        # so its events are counted and remembered, and the client's retry (same event_ids) sends only the rest:
        # every event reaches the log once, for rollup and for alerts (which count per record).
        partial = _Broker(fail_at=1, error=KafkaTimeoutError())
        with pytest.raises(PublishFailed) as failed:
            await _acceptor(partial, redis, iso.prefix, keys).accept("ws_big", large, "http", quota=10_000)
        assert not failed.value.permanent
        kept = await _sealed_ids(partial.records, keys)
        assert 0 < len(kept) < 500
        assert [e.event_id for e in failed.value.acknowledged] == kept
        assert int(await redis.get(quota) or 0) == 500 + len(kept)
        assert await Deduplicator(redis, iso.prefix, 3600).seen("ws_big", ids) == set(kept)
        retry = _Broker()
        again = await _acceptor(retry, redis, iso.prefix, keys).accept("ws_big", large, "http", quota=10_000)
        assert (again.accepted, again.duplicates) == (500 - len(kept), len(kept))
        assert all(len(r) <= ENVELOPE_MAX_BYTES for r in [*partial.records, *retry.records])
        assert sorted(kept + await _sealed_ids(retry.records, keys)) == sorted(ids)
        # One tally per acknowledged envelope, of exactly its events: the ledger counts each event once.
        tallied = [sum(t.days.values()) for t in [*partial.tallies, *retry.tallies]]
        assert (len(tallied), sum(tallied)) == (len(partial.records) + len(retry.records), 500)
        assert int(await redis.get(quota) or 0) == 1000

        refused = _Broker(fail_at=0, error=MessageSizeTooLargeError())
        with pytest.raises(PublishFailed) as too_large:
            await _acceptor(refused, redis, iso.prefix, keys).accept("ws_big", _events(1), "http", quota=10_000)
        assert too_large.value.permanent
    finally:
        await redis.aclose()


async def test_ingest_refuses_to_start_against_a_topic_that_cannot_hold_its_envelopes(iso: Isolation) -> None:
    await _set_max_message_bytes(iso, NEEDED_BYTES - 1)
    name = topic_name(USAGE_EVENTS, iso.prefix)

    async def refused() -> str | None:  # an altered config reaches describe_configs a moment later
        try:
            async with serving([create_ingest(iso.settings(IngestSettings))]):
                return None
        except TopicTooSmall as exc:
            return str(exc)

    message = await eventually(refused, timeout=30, interval=0.5)
    assert f"topic {name} holds records of at most {NEEDED_BYTES - 1} bytes" in message
    assert f"max.message.bytes to at least {NEEDED_BYTES}" in message


async def test_alerts_count_every_event_of_a_split_batch_once() -> None:
    # rollup's side is the ClickHouse check above; alerts count spend per record, each envelope being one.
    keys = FakeKeyRing("ws_big")
    inflated, _ = _gzipped(random.Random(5))
    broker = _Broker()
    acceptor = BatchAcceptor(
        broker=broker,
        keyring=cast(KeyRing, keys),
        dedupe=cast(Deduplicator, _NoRepeats()),
        limiter=cast(Limiter, _NoLimits()),
        topic_prefix="",
        max_age=timedelta(days=30),
        publish_timeout=5,
    )
    await acceptor.accept("ws_big", orjson.loads(inflated)["events"], "http", quota=-1, rate_limited=False)
    assert len(broker.records) > 1
    opened = [await read_record(r, cast(KeyRing, keys)) for r in broker.records]
    async with rig(None) as r:
        counted = [CountedRecord("ws_big", "usage", 0, offset, o.events) for offset, o in enumerate(opened)]
        assert await r.counter.count(counted, {}) == len(broker.records)
        month = datetime.now(UTC).strftime("%Y-%m")
        assert await r.counter.month_to_date("ws_big", month, ALL) == 500 * 250_000_000  # 500 x 0.25 USD


class _NoRepeats:
    async def seen(self, workspace_id: str, event_ids: list[str]) -> set[str]:
        return set()

    async def mark(self, workspace_id: str, event_ids: list[str]) -> None:
        return None


class _NoLimits:
    async def reserve(self, workspace_id: str, events: int, quota: int, now: datetime) -> object:
        return None


async def test_ingest_refuses_to_start_without_the_tallies_topic(iso: Isolation) -> None:
    name = topic_name(INGEST_TALLIES, iso.prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=iso.stack.kafka)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()

    async def refused() -> str | None:  # a deletion reaches describe_configs a moment later
        try:
            async with serving([create_ingest(iso.settings(IngestSettings))]):
                return None
        except TopicTooSmall as exc:
            return str(exc)

    message = await eventually(refused, timeout=30, interval=0.5)
    assert f"topic {name} cannot be described" in message and "spendstream topics create" in message
