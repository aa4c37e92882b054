"""Ingest: sustained accepted events/s for 500-event HTTP batches, and request latency at half that load.

ingest runs as its own uvicorn process (`spendstream run ingest`) against the real broker; the load comes from
another process (bench.loadgen). On 2 cores the load generator, the broker and ingest share the CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import redis.asyncio as aioredis

from bench.harness import Bench, ServiceProcess, free_port, python_json
from bench.profiling import profile_during
from bench.stats import Spread


@dataclasses.dataclass(frozen=True)
class IngestFigures:
    throughput: Spread  # events/s, closed loop
    half_load: float  # events/s offered in the latency runs
    p50: Spread  # ms, open loop at half load
    p99: Spread
    loadgen_cpu_share: float  # the load generator's CPU seconds per wall second
    ingest_cpu_share: float  # the ingest process's CPU seconds per wall second in the closed-loop runs
    records_per_s: float  # Kafka records (envelopes) per second at full load
    # Per latency repetition: its p99 (ms) and how many AOF rewrites Redis started meanwhile. A rewrite forks
    # Redis and writes every dedupe id the closed-loop runs left, on the same two cores (docs/benchmarks.md).
    p99_and_rewrites: list[tuple[float, int]]


def run_sizes(smoke: bool) -> dict[str, Any]:
    if smoke:
        return {"reps": 1, "warmup": 0.5, "duration": 1.5, "concurrency": 8}
    return {"reps": 3, "warmup": 3.0, "duration": 15.0, "concurrency": 16}


async def measure(bench: Bench) -> IngestFigures:
    sizes = run_sizes(bench.smoke)
    ns = await bench.namespace("ingest", workspaces=6)
    keys = [w.ingest for w in ns.workspaces]
    svc = ServiceProcess("ingest", bench.env(ns.prefix, free_port()), bench.workdir / "logs" / "ingest.log")
    await svc.start()
    try:
        base = {"url": svc.url, "keys": keys, "warmup": sizes["warmup"], "duration": sizes["duration"]}
        full: list[dict[str, Any]] = []
        ingest_cpu = 0.0
        for rep in range(sizes["reps"]):
            run = python_json("bench.loadgen", {**base, "mode": "closed", "concurrency": sizes["concurrency"]})
            before = await svc.metric("process_cpu_seconds_total")
            if rep == 0 and bench.profile:
                full.append(await profile_during(svc.pid, "ingest-http", run, bench))
            else:
                full.append(await run)
            ingest_cpu += await svc.metric("process_cpu_seconds_total") - before
        throughput = Spread.of([r["events_per_s"] for r in full])
        half = throughput.median / 2
        latency, rewrites = [], []
        for _ in range(sizes["reps"]):
            before = await _aof_rewrites(bench)
            latency.append(await python_json("bench.loadgen", {**base, "mode": "open", "rate": half}))
            rewrites.append(await _aof_rewrites(bench) - before)
    finally:
        await svc.stop()
    wall = sum(r["wall_seconds"] for r in full)
    cpu = sum(r["cpu_seconds"] for r in full) / wall
    return IngestFigures(
        throughput=throughput,
        half_load=half,
        p50=Spread.of([r["p50_ms"] for r in latency]),
        p99=Spread.of([r["p99_ms"] for r in latency]),
        loadgen_cpu_share=cpu,
        ingest_cpu_share=ingest_cpu / wall,
        records_per_s=throughput.median / 500,
        p99_and_rewrites=[(r["p99_ms"], n) for r, n in zip(latency, rewrites, strict=True)],
    )


async def _aof_rewrites(bench: Bench) -> int:
    """AOF rewrites Redis has started so far (INFO persistence: the finished ones, plus one in progress)."""
    client: aioredis.Redis = aioredis.Redis.from_url(bench.redis)
    try:
        info = await client.info("persistence")
    finally:
        await client.aclose()
    return int(info.get("aof_rewrites", 0)) + int(info.get("aof_rewrite_in_progress", 0))
