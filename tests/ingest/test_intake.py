"""Kafka-native intake on `ingest.raw.v1`: validated like HTTP, refusals leave content-free rejection records,
and poison records (bad bytes, bad key, huge, undecodable header) never stop the consumer."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from spendstream.common.records import RejectionRecord
from spendstream.common.topics import INGEST_RAW, INGEST_REJECTED, USAGE_EVENTS, topic_name
from spendstream.ingest.app import create_service
from spendstream.ingest.batches import PublishFailed
from spendstream.ingest.intake import RawIntake
from spendstream.ingest.settings import IngestSettings
from tests.ingest.topics import read_all
from tests.support import Isolation, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration
# The optional fields of the event, accepted here as over HTTP (one acceptor).
_ALL_PARTS: dict[str, Any] = {
    "cached_input_tokens": 300,
    "reasoning_tokens": 50,
    "cache_creation_input_tokens": 500,
    "cache_creation_1h_input_tokens": 200,
    "service_tier": "flex",
    "reservation_id": "rsv_1",
}


async def test_raw_records_are_forwarded_or_rejected_and_poison_never_stops_the_consumer(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    other = await create_workspace(iso, "other")
    secret = f"raw-secret-{uuid.uuid4().hex}"
    key = [("x-api-key", ws["ingest"].encode())]
    records: list[tuple[bytes, list[tuple[str, bytes]]]] = [
        (orjson.dumps({"events": [usage_event(**_ALL_PARTS), usage_event(prompt=secret)]}), key),  # 0: 1 ok, 1 not
        (b"\xff\xfe not json " + secret.encode(), key),  # 1: bad bytes
        (orjson.dumps({"events": [usage_event()]}), [("x-api-key", b"ssk_ingest_forged")]),  # 2: unknown key
        (orjson.dumps({"events": [usage_event()]}), []),  # 3: no key
        (orjson.dumps({"events": [usage_event()]}), [("x-api-key", b"\xff\xfe\xfd")]),  # 4: non-UTF-8 header
        (b'{"events": [' + b" " * 300_000 + b"]}", key),  # 5: too big
        (orjson.dumps({"events": [usage_event()]}), [("x-api-key", other["read"].encode())]),  # 6: wrong scope
        (orjson.dumps({"events": [usage_event() for _ in range(501)]}), key),  # 7: too many events
        (orjson.dumps({"events": [usage_event(workspace_id=other["workspace_id"])]}), key),  # 8: forged workspace
        (orjson.dumps({"events": [usage_event(), usage_event()]}), key),  # 9: all ok
    ]
    raw_topic = topic_name(INGEST_RAW, iso.prefix)
    settings = iso.settings(IngestSettings, raw_max_record_bytes=200_000)
    async with serving([create_service(settings)]):
        producer = AIOKafkaProducer(bootstrap_servers=iso.stack.kafka, max_request_size=4 * 1024 * 1024)
        await producer.start()
        try:
            # One partition for all of them, so they are consumed strictly in this order.
            for value, headers in records:
                await producer.send_and_wait(raw_topic, value, headers=headers, partition=0)
        finally:
            await producer.stop()

        async def rejections() -> list[Any] | None:
            found = await read_all(iso.stack.kafka, topic_name(INGEST_REJECTED, iso.prefix))
            return found if len(found) >= 9 else None

        rejected = await eventually(rejections, timeout=60)

        async def envelopes() -> list[Any] | None:
            found = await read_all(iso.stack.kafka, topic_name(USAGE_EVENTS, iso.prefix))
            return found if len(found) >= 2 else None

        forwarded = await eventually(envelopes, timeout=60)

    parsed = [RejectionRecord.model_validate_json(r.value) for r in rejected]
    by_offset = {(p.source_offset, p.index, p.field, p.code, p.workspace_id) for p in parsed}
    wid = ws["workspace_id"]
    assert by_offset == {
        (0, 1, "prompt", "content_field", wid),
        (1, None, "", "invalid_json", wid),
        (2, None, "", "unauthorized", None),
        (3, None, "", "unauthorized", None),
        (4, None, "", "unauthorized", None),
        (5, None, "", "payload_too_large", None),
        (6, None, "", "unauthorized", None),
        (7, None, "", "too_many_events", wid),
        (8, 0, "workspace_id", "forbidden_field", wid),
    }
    assert all(p.source_topic == raw_topic for p in parsed)
    # Records of one batch are handled side by side, so their forwards may come in either order.
    assert sorted(orjson.loads(r.value)["event_count"] for r in forwarded) == [1, 2]
    assert {r.key for r in forwarded} == {wid.encode()}
    for record in [*rejected, *forwarded]:
        assert secret.encode() not in record.value


class _Probe(RawIntake):
    """handle_batch's own behaviour: record n takes n*10 ms; record 0 is not acknowledged by Kafka."""

    def __init__(self) -> None:
        self.done: list[int] = []

    async def handle(self, record: Any) -> None:
        await asyncio.sleep(0.01 * record)
        if record == 0:
            raise PublishFailed("TimeoutError")
        self.done.append(record)


async def test_a_batch_fails_only_after_every_record_has_finished() -> None:
    # The batch comes again as a whole; meanwhile no record may be left half-handled behind the failure.
    probe = _Probe()
    with pytest.raises(PublishFailed):
        await probe.handle_batch([0, 1, 2, 3])
    assert probe.done == [1, 2, 3]
