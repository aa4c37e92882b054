"""Kafka for every service: the broker factory, typed publish and subscribe, provisioning, replayed tables.

`Publisher` encodes a record of its topic's type; `subscribe` decodes each record into it and skips (with a
content-free log) one that does not parse; `subscribe_batch` hands a batch of raw records to readers that
parse themselves (the untrusted raw intake, the usage consumers). Every subscription states its ack policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.message import StreamMessage

from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import ALL_TOPICS, AnyTopic, Topic, bound_ms, topic_name

log = logging.getLogger(__name__)
V = TypeVar("V")
R = TypeVar("R")


def make_broker(
    settings: BaseServiceSettings, client_id: str, compression_type: Literal["lz4"] | None = "lz4"
) -> KafkaBroker:
    """A FastStream broker whose publishes wait for every in-sync replica (acks=all, idempotent producer).

    `compression_type=None` for a producer whose records are compressed already (ingest's envelopes)."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"{settings.topic_prefix}{client_id}",
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        compression_type=compression_type,
        max_request_size=8 * 1024 * 1024,
        request_timeout_ms=15_000,
        graceful_timeout=30.0,
        # Topics come from `spendstream topics create` alone. FastStream would otherwise create a missing
        # subscribed topic itself, with one partition and the broker's defaults (CreateTime, no retention of
        # ours): a typo or a skipped provisioning step must not quietly become a topic.
        allow_auto_create_topics=False,
        logger=logging.getLogger(f"spendstream.{client_id}.kafka"),
    )


def _utf8(value: bytes | None) -> bool:
    try:
        (value or b"").decode()
    except UnicodeDecodeError:
        return False
    return True


def _blank_bad_headers(record: Any) -> Any:
    if all(v is not None and _utf8(v) for _, v in (record.headers or ())):
        return record
    headers = [(k, v if v is not None and _utf8(v) else b"") for k, v in (record.headers or ())]
    cleaned = dataclasses.replace(record, headers=headers)
    consumer = getattr(record, "consumer", None)
    if consumer is not None:  # FastStream's concurrent subscribers commit through the record's own consumer
        cleaned.consumer = consumer
    return cleaned


async def tolerant_parser(message: Any, original: Callable[[Any], Awaitable[StreamMessage[Any]]]) -> StreamMessage[Any]:
    """FastStream's parser decodes every header as UTF-8 and fails on a poison record before the handler runs;
    with NACK_ON_ERROR the record would come back forever (a stuck partition). Headers that are not UTF-8 (or
    null) are blanked, so the handler sees the record and skips or rejects it. Works for batches too.

    A `reply_to` header is ignored: no handler answers RPC-style, and FastStream would otherwise publish the
    handler's result to whatever topic a record names (failing, and redelivering forever, if it does not exist).
    """
    if isinstance(message, tuple | list):  # a batch: a tuple from aiokafka, a list from the in-memory broker
        parsed = await original(tuple(_blank_bad_headers(r) for r in message))
    else:
        parsed = await original(_blank_bad_headers(message))
    parsed.reply_to = ""
    return parsed


async def raw_body(message: StreamMessage[Any]) -> Any:
    """No decoding by FastStream (which trusts a record's content-type header and fails on a lying one): the
    bytes (a list of them for a batch) reach the handler, which parses them within bounds."""
    return message.body


class RawRecord(Protocol):
    """A record as the consumer fetched it (aiokafka's ConsumerRecord): coordinates, key, value, headers."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Received(Generic[R]):
    """One record decoded into its topic's type, with where it came from."""

    value: R
    key: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class RawBatch:
    """A fetched batch, undecoded, and the consumer that fetched it (for lag gauges)."""

    records: Sequence[RawRecord]
    consumer: object


class Publisher(Generic[R]):
    """Publishes records of one topic's type; each publish waits for the broker's acknowledgement (acks=all)."""

    def __init__(self, broker: KafkaBroker, topic: Topic[R], prefix: str) -> None:
        self._broker = broker
        self._codec = topic.record
        self.name = topic_name(topic, prefix)

    async def publish(self, record: R, key: str) -> None:
        await self._broker.publish(self._codec.encode(record), self.name, key=key.encode())

    async def tombstone(self, key: str) -> None:
        """A null value: on a compacted topic, compaction then drops every earlier value of the key."""
        await self._broker.publish(None, self.name, key=key.encode())


def _reason(exc: ValueError) -> str:
    # pydantic's error type ("json_invalid", "missing", ...) names the problem without quoting the input.
    errors = getattr(exc, "errors", None)
    found = errors() if callable(errors) else []
    return str(found[0]["type"]) if found else type(exc).__name__


def subscribe(
    broker: KafkaBroker,
    topic: Topic[R],
    *,
    prefix: str,
    group: str,
    handler: Callable[[Received[R]], Awaitable[None]],
    ack_policy: AckPolicy,
    **options: Any,
) -> None:
    """Hand each record of `topic`, decoded into its type, to `handler` in consumer group `prefix + group`.

    A record that does not decode (or has no value) is skipped and logged by its coordinates and a reason code,
    never its content: with NACK_ON_ERROR it would otherwise come back forever and hold its partition.
    """
    codec = topic.record

    async def on_record(msg: KafkaMessage) -> None:
        record = cast(RawRecord, msg.raw_message)
        try:
            value = codec.decode(record.value) if record.value is not None else None
            reason = "no_value"
        except ValueError as exc:
            value, reason = None, _reason(exc)
        if value is None:
            log.error(
                "skipping a record that does not parse",
                extra={"topic": record.topic, "partition": record.partition, "offset": record.offset, "reason": reason},
            )
            return
        await handler(Received(value, record.key, record.topic, record.partition, record.offset))

    # The handler's name is what FastStream's logs and metrics call the subscription.
    on_record.__name__ = on_record.__qualname__ = f"on_{topic.name}"
    broker.subscriber(
        topic_name(topic, prefix),
        group_id=f"{prefix}{group}",
        auto_offset_reset="earliest",
        parser=tolerant_parser,
        decoder=raw_body,
        ack_policy=ack_policy,
        **options,
    )(on_record)


def subscribe_batch(
    broker: KafkaBroker,
    topic: Topic[bytes],
    *,
    prefix: str,
    group: str,
    handler: Callable[[RawBatch], Awaitable[None]],
    ack_policy: AckPolicy,
    **options: Any,
) -> None:
    """Hand batches of raw records of `topic` to `handler` in consumer group `prefix + group`; the handler
    parses them itself (within its own bounds, or faster than record by record)."""

    async def on_batch(msg: KafkaMessage) -> None:
        await handler(RawBatch(cast(Sequence[RawRecord], msg.raw_message), msg.consumer))

    on_batch.__name__ = on_batch.__qualname__ = f"on_{topic.name}"

    broker.subscriber(
        topic_name(topic, prefix),
        group_id=f"{prefix}{group}",
        batch=True,
        auto_offset_reset="earliest",
        parser=tolerant_parser,
        decoder=raw_body,
        ack_policy=ack_policy,
        **options,
    )(on_batch)


async def provision_topics(
    settings: BaseServiceSettings, topics: tuple[AnyTopic, ...] = ALL_TOPICS, replication_factor: int | None = None
) -> list[str]:
    """Create every missing topic with its declared configuration; returns the names it created."""
    replication_factor = replication_factor or settings.topic_replication_factor
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if topic_name(t, settings.topic_prefix) not in existing]
        if not wanted:
            return []
        new = [
            NewTopic(
                topic_name(t, settings.topic_prefix),
                t.partitions,
                replication_factor,
                topic_configs=t.configs(bound_ms(settings.compaction_bound_seconds)),
            )
            for t in wanted
        ]
        response = await admin.create_topics(new)
        created = []
        for name, code, *_ in response.topic_errors:
            if code == 0:
                created.append(name)
            elif code != TopicAlreadyExistsError.errno:
                raise RuntimeError(f"creating topic {name} failed with Kafka error code {code}")
        # Metadata propagates asynchronously; wait until every topic is visible before anyone produces.
        for _ in range(100):
            if {topic_name(t, settings.topic_prefix) for t in wanted} <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
        return created
    finally:
        await admin.close()


class CompactedTable(Generic[V]):
    """The latest value per key of a compacted topic, decoded into its record type, replayed from offset 0 and
    then followed.

    Every replica holds the whole table (no consumer group), so control-plane changes such as a revoked key
    reach all of them within one poll. `get` after `catch_up()` sees every record acknowledged before the call.
    """

    def __init__(
        self,
        settings: BaseServiceSettings,
        topic: Topic[V],
        on_change: Callable[[str, V | None], None] | None = None,
    ) -> None:
        self._bootstrap = settings.kafka_bootstrap_servers
        self._topic = topic_name(topic, settings.topic_prefix)
        self._parse = topic.record.decode
        self._on_change = on_change
        self._values: dict[str, V] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._partitions: list[TopicPartition] = []
        self._progress = asyncio.Event()

    def get(self, key: str) -> V | None:
        return self._values.get(key)

    def values(self) -> list[V]:
        return list(self._values.values())

    async def start(self, timeout: float = 15.0) -> None:
        """Replay the topic; returns once caught up (`catch_up(timeout)`)."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._topic)
        for _ in range(50):
            if partitions:
                break
            await asyncio.sleep(0.1)
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self._topic)
        if not partitions:
            raise RuntimeError(f"topic {self._topic} does not exist; run `spendstream topics create`")
        self._partitions = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)
        self._task = asyncio.create_task(self._run(), name=f"table:{self._topic}")
        await self.catch_up(timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                for record in records:
                    self._apply(record.key, record.value)
            self._progress.set()

    def _apply(self, raw_key: bytes | None, raw_value: bytes | None) -> None:
        if raw_key is None:
            return
        try:
            key = raw_key.decode()
        except UnicodeDecodeError:
            # No record we write has such a key; one that does must not end the reader (every later record,
            # a revocation or a shredded key included, would go unseen).
            log.error("skipping a record with a non-UTF-8 key on %s", self._topic)
            return
        if raw_value is None:
            self._values.pop(key, None)
            if self._on_change:
                self._on_change(key, None)
            return
        try:
            value = self._parse(raw_value)
        except ValueError:
            # A malformed control record must not take the table down; it is skipped, never echoed.
            log.error("skipping unparsable record on %s", self._topic)
            return
        self._values[key] = value
        if self._on_change:
            self._on_change(key, value)

    async def catch_up(self, timeout: float = 15.0) -> None:
        """Return once every record written before this call has been applied."""
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(self._partitions)
        async with asyncio.timeout(timeout):
            while True:
                if self._task is not None and self._task.done():
                    self._task.result()  # surfaces the reader's failure instead of waiting forever
                positions = [await self._position(tp) for tp in self._partitions]
                if all(pos >= ends[tp] for pos, tp in zip(positions, self._partitions, strict=True)):
                    return
                self._progress.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self._progress.wait()

    async def _position(self, tp: TopicPartition) -> int:
        assert self._consumer is not None
        return int(await self._consumer.position(tp))
