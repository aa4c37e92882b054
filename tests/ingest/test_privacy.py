"""The promise of the privacy guard end to end: a refused event's content reaches no log line, no metric, no
Kafka record and no ClickHouse row, over HTTP and over the raw Kafka intake alike."""

from __future__ import annotations

import io
import logging
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from spendstream.common.topics import INGEST_RAW, INGEST_REJECTED, topic_name
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.settings import RollupSettings
from tests.ingest.topics import read_all, topic_names
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def _poisoned(secret: str) -> list[dict[str, Any]]:
    return [
        usage_event(prompt=secret),
        usage_event(messages=[{"role": "user", "content": secret}]),
        usage_event(systemPrompt=secret),
        usage_event(tags={"feature": "chat", "prompt_text": secret}),
        usage_event(tags={"feature": "chat", "user": f"{secret}@example.com"}),
        usage_event(notes=secret),
        usage_event(tags={"feature": secret * 10}),  # too long: refused, and not echoed
        usage_event(model=f"{secret} with spaces"),  # invalid format: refused, and not echoed
    ]


async def test_a_secret_in_refused_fields_is_nowhere_in_logs_metrics_topics_or_clickhouse(
    iso: Isolation, json_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="spendstream")
    secret = f"s3cr3t{uuid.uuid4().hex}"
    ws = await create_workspace(iso)
    services = [create_ingest(iso.settings(IngestSettings)), create_rollup(iso.settings(RollupSettings))]
    async with serving(services) as client:
        r = await client.post(
            "/v1/events", json={"events": [usage_event(), *_poisoned(secret)]}, headers=auth(ws["ingest"])
        )
        assert r.status_code == 202
        assert (r.json()["accepted"], len(r.json()["rejected"])) == (1, 8)
        assert secret not in r.text
        refused = await client.post("/v1/events", json={"events": _poisoned(secret)}, headers=auth(ws["ingest"]))
        assert refused.status_code == 422 and secret not in refused.text

        producer = AIOKafkaProducer(bootstrap_servers=iso.stack.kafka)
        await producer.start()
        try:
            raw = topic_name(INGEST_RAW, iso.prefix)
            headers = [("x-api-key", ws["ingest"].encode())]
            await producer.send_and_wait(
                raw, orjson.dumps({"events": [usage_event(), *_poisoned(secret)]}), headers=headers
            )
            await producer.send_and_wait(raw, f"not json {secret}".encode(), headers=headers)
        finally:
            await producer.stop()

        async def stored() -> bool:
            usage = await client.get("/v1/usage", headers=auth(ws["read"]))
            return bool(usage.json()["totals"]["requests"] == 2)

        await eventually(stored, timeout=60)

        async def rejections_out() -> bool:
            return len(await read_all(iso.stack.kafka, topic_name(INGEST_REJECTED, iso.prefix))) == 9

        await eventually(rejections_out, timeout=60)
        metrics = (await client.get("/metrics")).text

    needle = secret.encode()
    assert secret not in json_log.getvalue()
    assert json_log.getvalue(), "the log capture saw nothing, so it proves nothing"
    assert secret not in caplog.text
    assert secret not in metrics
    assert "spendstream_ingest_events_refused_total" in metrics

    topics = await topic_names(iso.stack.kafka, iso.prefix)
    assert topic_name(INGEST_RAW, iso.prefix) in topics
    searched = 0
    for topic in topics:
        for record in await read_all(iso.stack.kafka, topic):
            if topic == topic_name(INGEST_RAW, iso.prefix):
                continue  # the producer's own untrusted input: what ingest must not copy anywhere else
            searched += 1
            assert needle not in (record.value or b""), topic
            assert needle not in (record.key or b""), topic
            assert all(needle not in (v or b"") for _, v in record.headers), topic
    assert searched > 0

    ch = clickhouse_client(iso.stack.clickhouse)
    tables = [
        row[0]
        for row in ch.query(
            "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": iso.database}
        ).result_rows
    ]
    assert "usage_events" in tables
    for table in tables:
        rows = ch.query(f"SELECT * FROM {iso.database}.`{table}`").result_rows
        assert secret not in repr(rows), table
