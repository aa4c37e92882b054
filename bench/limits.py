"""The limits our figures chase, measured in the same run on the same machine.

- Kafka's own ProducerPerformance (Java client, acks=all, lz4, idempotent) with records the size of our envelopes:
  the most events/s the broker takes here when events travel 500 to a record.
- Kafka's own EndToEndLatency (produce acks=all, then consume): the floor of one hop through the broker.
- Raw clickhouse-connect inserts of the very rows rollup writes, into the same schema in chDB: the most
  events/s the storage engine takes here.
- The bare ClickHouse deletion (see bench.chtasks) for erasure.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.events import BATCH, BodyTemplate
from bench.harness import KAFKA_LIBS, ROOT, Bench
from spendstream.common.envelope import seal
from spendstream.common.events import EncodedBatch, encode, validate_events

JAVA = (
    "java",
    "-cp",
    f"{KAFKA_LIBS}/*",
    f"-Dlog4j2.configurationFile={ROOT}/scripts/kafka/log4j2.properties",
    "-Xmx512m",
)
# The producer settings of spendstream.common.kafka.make_broker, in the Java client's words.
PRODUCER_PROPS = (
    "acks=all",
    "enable.idempotence=true",
    "compression.type=lz4",
    "linger.ms=2",
    "max.request.size=8388608",
)


def envelope_bytes(events: int = BATCH) -> int:
    """The size of one record on usage.events.v1 carrying `events` events, sealed by the real code path."""
    raw = orjson.loads(BodyTemplate(events).body("size"))["events"]
    batch = validate_events(raw, datetime.now(UTC), timedelta(days=400))
    envelope = seal(
        EncodedBatch(encode(batch.accepted), len(batch.accepted)),
        workspace_id="ws_" + "0" * 32,
        batch_id=str(uuid.uuid4()),
        key=os.urandom(32),
        key_version=1,
        ingested_at=datetime.now(UTC),
    )
    return len(envelope.model_dump_json().encode())


def raw_record_bytes(events: int = BATCH) -> int:
    """The size of one `{"events": [...]}` record on ingest.raw.v1."""
    return len(BodyTemplate(events).body("size"))


async def _topic(bench: Bench, name: str, partitions: int = 6) -> str:
    topic = f"{bench.root_prefix}limits.{name}.{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        for _ in range(100):
            if topic in await admin.list_topics():
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    return topic


async def _java(*args: str, timeout: float = 600.0) -> str:
    proc = await asyncio.create_subprocess_exec(
        *JAVA, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {text[-2000:]}")
    return text


_PERF = re.compile(
    r"(?P<n>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)


async def producer_performance(bench: Bench, records: int, record_size: int, throughput: float = -1) -> dict[str, Any]:
    """org.apache.kafka.tools.ProducerPerformance: records/s and ack latency percentiles (ms)."""
    topic = await _topic(bench, "perf")
    text = await _java(
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(record_size),
        "--throughput",
        str(int(throughput)),
        "--command-property",
        f"bootstrap.servers={bench.kafka}",
        *PRODUCER_PROPS,
    )
    matches = list(_PERF.finditer(text))
    if not matches:
        raise RuntimeError(f"unexpected ProducerPerformance output: {text[-500:]}")
    final = matches[-1]
    return {
        "records_per_s": float(final["rate"]),
        "mb_per_s": float(final["mb"]),
        "p50_ms": float(final["p50"]),
        "p99_ms": float(final["p99"]),
        "avg_ms": float(final["avg"]),
    }


_E2E = re.compile(r"Percentiles: 50th = (?P<p50>[\d.]+), 99th = (?P<p99>[\d.]+), 99.9th = (?P<p999>[\d.]+)")


async def end_to_end_latency(bench: Bench, records: int, record_size: int) -> dict[str, float]:
    """org.apache.kafka.tools.EndToEndLatency: produce (acks=all) then consume, one record at a time (ms)."""
    topic = await _topic(bench, "e2e", partitions=1)
    text = await _java(
        "org.apache.kafka.tools.EndToEndLatency",
        "--bootstrap-server",
        bench.kafka,
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--producer-acks",
        "all",
        "--record-size",
        str(record_size),
    )
    match = _E2E.search(text)
    if not match:
        raise RuntimeError(f"unexpected EndToEndLatency output: {text[-500:]}")
    return {"p50_ms": float(match["p50"]), "p99_ms": float(match["p99"]), "p999_ms": float(match["p999"])}
