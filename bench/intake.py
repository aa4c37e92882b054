"""Kafka-native intake: events/s that one ingest process validates and forwards from `ingest.raw.v1`.

The raw topic is pre-filled with N events as `{"events": [...]}` records of 500, each with its workspace's
ingest key in the `x-api-key` header (what an external producer writes); then an ingest process starts and the
clock runs from the first forwarded batch until all N are accepted (its own counter on /metrics).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from aiokafka import AIOKafkaProducer

from bench.events import BATCH, BodyTemplate
from bench.harness import Bench, ServiceProcess, free_port, rate_until
from bench.profiling import profile_during
from bench.stats import Spread
from spendstream.common.topics import INGEST_RAW, topic_name

ACCEPTED = "spendstream_ingest_events_accepted_total"


@dataclasses.dataclass(frozen=True)
class IntakeFigures:
    throughput: Spread  # events/s
    events: int


def _sizes(smoke: bool) -> dict[str, int]:
    return {"reps": 1, "events": 5_000} if smoke else {"reps": 3, "events": 100_000}


async def measure(bench: Bench) -> IntakeFigures:
    sizes = _sizes(bench.smoke)
    rates = []
    for rep in range(sizes["reps"]):
        # A fresh namespace per repetition: each ingest process reads its raw topic from the start.
        ns = await bench.namespace(f"intake{rep}", workspaces=6)
        template = BodyTemplate(BATCH)
        producer = AIOKafkaProducer(
            bootstrap_servers=bench.kafka,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            compression_type="lz4",
            max_request_size=8 * 1024 * 1024,
        )
        await producer.start()
        try:
            pending = []
            for b in range(sizes["events"] // BATCH):
                ws = ns.workspaces[b % len(ns.workspaces)]
                pending.append(
                    await producer.send(
                        topic_name(INGEST_RAW, ns.prefix),
                        template.body(f"k{rep}x{b}"),
                        headers=[("x-api-key", ws.ingest.encode())],
                    )
                )
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        svc = ServiceProcess("ingest", bench.env(ns.prefix, free_port()), bench.workdir / "logs" / f"intake-{rep}.log")
        await svc.start()
        try:
            work = rate_until(svc, ACCEPTED, sizes["events"], time.monotonic(), 120 if bench.smoke else 900)
            if rep == 0 and bench.profile:
                rates.append(await profile_during(svc.pid, "ingest-intake", work, bench, seconds=10))
            else:
                rates.append(await work)
        finally:
            await svc.stop()
    return IntakeFigures(Spread.of(rates), sizes["events"])
