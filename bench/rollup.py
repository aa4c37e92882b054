"""Rollup: events/s from Kafka into ClickHouse for one rollup process.

The topic is pre-filled with N events in sealed 500-event envelopes (the real seal() path, as ingest writes
them); then a rollup process starts on a fresh chDB directory and consumer group, and the clock runs from the
first stored batch until all N are stored (read from its own counter on /metrics).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bench.events import BATCH, BodyTemplate
from bench.harness import Bench, Namespace, ServiceProcess, free_port, rate_until
from bench.profiling import profile_during
from bench.stats import Spread
from spendstream.common.envelope import seal
from spendstream.common.events import EncodedBatch, sealed_events
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import USAGE_EVENTS, topic_name

STORED = "spendstream_rollup_events_stored_total"
BATCH_RECORDS = "spendstream_rollup_batch_records"
CPU = "process_cpu_seconds_total"


@dataclasses.dataclass(frozen=True)
class RollupFigures:
    throughput: Spread  # events/s
    events: int
    batch_events: int  # events per ClickHouse insert at most (rollup's batch_max_records x 500)
    records_per_batch: Spread  # Kafka records (500 events each) per consumed batch, i.e. per insert, on average
    # The rollup process's CPU seconds (its Python and chDB's threads) per 100,000 events stored: less noisy than
    # the rate on a shared 2-core machine, so a change's effect shows in it when the rate hides it.
    cpu_per_100k: Spread


def _sizes(smoke: bool) -> dict[str, int]:
    return {"reps": 1, "events": 5_000} if smoke else {"reps": 3, "events": 1_000_000}


async def prefill(bench: Bench, ns: Namespace, events: int) -> None:
    """Produce `events` events as sealed envelopes keyed by workspace, round-robin over the namespace's."""
    settings = bench.settings(ns.prefix)
    keyring = KeyRing(settings)
    await keyring.table.start()
    keys: dict[str, tuple[int, bytes]] = {}
    try:
        for ws in ns.workspaces:
            version = keyring.current_version(ws.workspace_id)
            assert version is not None
            key = await keyring.data_key(ws.workspace_id, version)
            assert key is not None
            keys[ws.workspace_id] = (version, key)
    finally:
        await keyring.table.stop()
    template = BodyTemplate(BATCH)
    # Uncompressed records, as ingest publishes them (envelope.py: the plaintext is compressed before sealing).
    producer = AIOKafkaProducer(
        bootstrap_servers=bench.kafka,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        compression_type=None,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    try:
        pending = []
        now = datetime.now(UTC)
        for b in range(events // BATCH):
            ws_id = ns.workspaces[b % len(ns.workspaces)].workspace_id
            version, key = keys[ws_id]
            # The events as ingest seals them (events.sealed_events: the one validation, without the time window).
            batch = EncodedBatch.of(sealed_events(orjson.loads(template.body(f"r{b}"))["events"]))
            envelope = seal(
                batch, workspace_id=ws_id, batch_id=f"bench-{b}", key=key, key_version=version, ingested_at=now
            )
            pending.append(
                await producer.send(
                    topic_name(USAGE_EVENTS, ns.prefix), envelope.model_dump_json().encode(), key=ws_id.encode()
                )
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _one(bench: Bench, ns: Namespace, rep: int, events: int) -> tuple[float, float, float]:
    chdb = bench.workdir / f"ch-rollup-{rep}"
    env = bench.env(
        ns.prefix, free_port(), SPENDSTREAM_GROUP_ID=f"bench-rollup-{rep}", SPENDSTREAM_CLICKHOUSE_URL=f"chdb://{chdb}"
    )
    svc = ServiceProcess("rollup", env, bench.workdir / "logs" / f"rollup-{rep}.log")
    await svc.start()
    try:
        cpu_ready = await svc.metric(CPU)  # after start-up (imports, migrations); consuming may just have begun
        work = rate_until(svc, STORED, events, time.monotonic(), 120 if bench.smoke else 900)
        if rep == 0 and bench.profile:
            rate = await profile_during(svc.pid, "rollup", work, bench, seconds=10)
        else:
            rate = await work
        cpu = (await svc.metric(CPU) - cpu_ready) / events * 100_000
        batches = await svc.metric(f"{BATCH_RECORDS}_count")
        return rate, (await svc.metric(f"{BATCH_RECORDS}_sum")) / max(batches, 1.0), cpu
    finally:
        await svc.stop()
        shutil.rmtree(chdb, ignore_errors=True)


async def measure(bench: Bench) -> RollupFigures:
    sizes = _sizes(bench.smoke)
    ns = await bench.namespace("rollup", workspaces=6)
    await prefill(bench, ns, sizes["events"])
    runs = [await _one(bench, ns, rep, sizes["events"]) for rep in range(sizes["reps"])]
    return RollupFigures(
        Spread.of([r for r, _, _ in runs]),
        sizes["events"],
        _batch_events(),
        Spread.of([b for _, b, _ in runs]),
        Spread.of([c for _, _, c in runs]),
    )


def _batch_events() -> int:
    from spendstream.rollup.settings import RollupSettings

    field: Any = RollupSettings.model_fields["batch_max_records"]
    return int(field.default) * BATCH
