"""The run: each measurement, the limit it chases measured right after it, and the rows of the report."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from bench import alerts, e2e, erasure, ingest, intake, limits, rollup
from bench.events import BATCH
from bench.harness import KAFKA_LIBS, Bench, python_json
from bench.report import Row, render, to_json
from bench.stats import Spread

__all__ = ["MEASUREMENTS", "notes", "render", "run_all", "to_json"]

TARGET_LOAD = 20_000  # events/s at which the latency targets are set
Measurement = Callable[[Bench, dict[str, Any]], Awaitable[list[Row]]]


def _reps(bench: Bench) -> int:
    return 1 if bench.smoke else 3


async def _producer_limit(bench: Bench, record_size: int) -> dict[str, Any]:
    records = 60 if bench.smoke else 3000
    runs = [await limits.producer_performance(bench, records, record_size) for _ in range(_reps(bench))]
    return {"events_per_s": Spread.of([r["records_per_s"] * BATCH for r in runs]), "runs": runs}


async def _ingest(bench: Bench, meta: dict[str, Any]) -> list[Row]:
    figures = await ingest.measure(bench)
    bench.capacity["ingest"] = figures.throughput.median
    size = limits.envelope_bytes()
    limit = await _producer_limit(bench, size)
    half_records = max(1.0, figures.half_load / BATCH)
    seconds = 1 if bench.smoke else 20
    at_half = await limits.producer_performance(bench, max(10, int(half_records * seconds)), size, half_records)
    meta["ingest"] = {
        "envelope_bytes": size,
        "half_load_events_per_s": figures.half_load,
        "loadgen_cpu_share": round(figures.loadgen_cpu_share, 2),
        "ingest_cpu_share": round(figures.ingest_cpu_share, 2),
        "ingest_cpu_per_100k": round(figures.ingest_cpu_share / figures.throughput.median * 100_000, 3),
        "producer_performance": limit["runs"],
        "producer_performance_at_half_load": at_half,
        "p99_ms_and_redis_aof_rewrites": figures.p99_and_rewrites,
    }
    source = f"Kafka ProducerPerformance, {size:,} B records x {BATCH} events"
    return [
        Row(
            "ingest HTTP: accepted events/s, 500-event batches",
            "events/s",
            figures.throughput,
            "higher",
            100_000,
            limit["events_per_s"].median,
            source,
        ),
        Row(
            "ingest HTTP: p50 latency at half load",
            "ms",
            figures.p50,
            "lower",
            None,
            at_half["p50_ms"],
            "ProducerPerformance ack p50 at the same records/s",
        ),
        Row(
            "ingest HTTP: p99 latency at half load",
            "ms",
            figures.p99,
            "lower",
            50,
            at_half["p99_ms"],
            "ProducerPerformance ack p99 at the same records/s",
        ),
    ]


async def _rollup(bench: Bench, meta: dict[str, Any]) -> list[Row]:
    figures = await rollup.measure(bench)
    bench.capacity["rollup"] = figures.throughput.median
    runs = [
        await python_json(
            "bench.chtasks",
            {
                "task": "insert-limit",
                "path": str(bench.workdir / f"ch-limit-{rep}"),
                "db": "bench",
                "events": figures.events,
                "batch_events": figures.batch_events,
            },
        )
        for rep in range(_reps(bench))
    ]
    limit = Spread.of([r["rows_per_s"] for r in runs])
    meta["rollup"] = {
        "events": figures.events,
        "insert_rows": figures.batch_events,
        "insert_limit_runs": runs,
        "records_per_batch": figures.records_per_batch.median,
        "cpu_per_100k": round(figures.cpu_per_100k.median, 3),
        "cpu_per_100k_spread": [round(figures.cpu_per_100k.low, 3), round(figures.cpu_per_100k.high, 3)],
    }
    return [
        Row(
            "rollup: events/s Kafka → ClickHouse, one process",
            "events/s",
            figures.throughput,
            "higher",
            200_000,
            limit.median,
            f"rollup's own insert (ClickHouseWriter.insert) of the same events ready, "
            f"{figures.batch_events:,} per insert (chDB)",
        )
    ]


_HOP: dict[str, dict[str, float]] = {}


async def _kafka_latency(bench: Bench) -> dict[str, float]:
    """Kafka's one-hop latency with our record size; measured once per run, the limit of e2e and alerts."""
    if bench.tag not in _HOP:
        records = 100 if bench.smoke else 2000
        _HOP[bench.tag] = await limits.end_to_end_latency(bench, records, limits.envelope_bytes())
    return _HOP[bench.tag]


def _load(bench: Bench, rate: float) -> str:
    if bench.smoke or rate >= TARGET_LOAD:
        return f"{rate:,.0f} events/s offered"
    return f"{rate:,.0f} events/s offered: 80 % of measured capacity, below the target's {TARGET_LOAD:,}"


async def _e2e(bench: Bench, meta: dict[str, Any]) -> list[Row]:
    figures = await e2e.measure(bench)
    hop = await _kafka_latency(bench)
    meta["e2e"] = {
        "offered_events_per_s": figures.rate,
        "achieved_events_per_s": figures.achieved.median,
        "probes": figures.probes,
        "kafka_end_to_end_latency": hop,
    }
    rate = _load(bench, figures.rate)
    return [
        Row(
            f"end to end: accepted → visible in /v1/usage, p50 ({rate})",
            "ms",
            figures.p50,
            "lower",
            None,
            hop["p50_ms"],
            "Kafka EndToEndLatency p50 (one hop, acks=all)",
        ),
        Row(
            f"end to end: accepted → visible in /v1/usage, p99 ({rate})",
            "ms",
            figures.p99,
            "lower",
            2000,
            hop["p99_ms"],
            "Kafka EndToEndLatency p99 (one hop, acks=all)",
        ),
    ]


async def _intake(bench: Bench, meta: dict[str, Any]) -> list[Row]:
    figures = await intake.measure(bench)
    size = limits.raw_record_bytes()
    limit = await _producer_limit(bench, size)
    meta["intake"] = {"record_bytes": size, "events": figures.events, "producer_performance": limit["runs"]}
    return [
        Row(
            "ingest Kafka-native intake: events/s from ingest.raw.v1",
            "events/s",
            figures.throughput,
            "higher",
            100_000,
            limit["events_per_s"].median,
            f"Kafka ProducerPerformance, {size:,} B records x {BATCH} events",
        )
    ]


async def _alerts(bench: Bench, meta: dict[str, Any]) -> list[Row]:
    figures = await alerts.measure(bench)
    hop = await _kafka_latency(bench)
    meta["alerts"] = {
        "offered_events_per_s": figures.rate,
        "achieved_events_per_s": figures.achieved.median,
        "probes": figures.probes,
        "kafka_end_to_end_latency": hop,
    }
    rate = _load(bench, figures.rate)
    return [
        Row(
            f"alerts: accepted → webhook delivered, p50 ({rate})",
            "ms",
            figures.p50,
            "lower",
            None,
            hop["p50_ms"],
            "Kafka EndToEndLatency p50 (one hop, acks=all)",
        ),
        Row(
            f"alerts: accepted → webhook delivered, p99 ({rate})",
            "ms",
            figures.p99,
            "lower",
            5000,
            hop["p99_ms"],
            "Kafka EndToEndLatency p99 (one hop, acks=all)",
        ),
    ]


async def _erasure(bench: Bench, meta: dict[str, Any]) -> list[Row]:
    figures = await erasure.measure(bench)
    meta["erasure"] = {
        "stored_events": figures.stored,
        "events_per_workspace": figures.per_workspace,
        "prefill_seconds": round(figures.prefill_seconds, 1),
        "receipts": figures.receipts,
    }
    return [
        Row(
            f"erasure: one workspace among {figures.stored:,} events → verified receipt",
            "s",
            figures.seconds,
            "lower",
            60,
            figures.limit_seconds.median,
            "bare ALTER TABLE … DELETE (synchronous) of a same-size workspace, both tables",
        )
    ]


MEASUREMENTS: dict[str, Measurement] = {
    "ingest": _ingest,
    "intake": _intake,
    "rollup": _rollup,
    "e2e": _e2e,
    "alerts": _alerts,
    "erasure": _erasure,
}


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("faststream", "aiokafka", "clickhouse-connect", "chdb", "fastapi", "uvicorn", "pydantic", "orjson"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    jars = sorted(p.name for p in KAFKA_LIBS.glob("kafka-clients-*.jar"))
    if jars:
        versions["kafka"] = jars[-1].removeprefix("kafka-clients-").removesuffix(".jar")
    java = subprocess.run(["java", "-version"], capture_output=True, text=True)
    versions["java"] = (java.stderr.splitlines() or ["?"])[0]
    return versions


def _machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "load_average_at_start": os.getloadavg(),
    }


async def run_all(bench: Bench, only: list[str]) -> tuple[list[Row], dict[str, Any]]:
    """Every measurement in `only`, with the limits each chases; a failing one is reported, not fatal."""
    meta: dict[str, Any] = {
        "mode": "smoke" if bench.smoke else "full",
        "machine": _machine(),
        "versions": _versions(),
        "failed": {},
        "seconds_per_measurement": {},
    }

    async def one(name: str) -> list[Row]:
        started = time.monotonic()
        try:
            return await MEASUREMENTS[name](bench, meta)
        except Exception as exc:  # one broken measurement must not hide the others' figures
            meta["failed"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            return []
        finally:
            meta["seconds_per_measurement"][name] = round(time.monotonic() - started, 1)

    rows: list[Row] = []
    try:
        # One after the other even in smoke mode: side by side, six pipelines starve each other on 2 cores.
        for name in only:
            rows += await one(name)
    finally:
        meta["machine"]["load_average_at_end"] = os.getloadavg()
        try:
            await bench.cleanup()
        except Exception as exc:  # a broker gone at the end must not swallow the figures measured before
            meta["failed"]["cleanup"] = f"{type(exc).__name__}: {exc} (topics bench-{bench.tag}-* may be left)"
    return rows, meta


def notes(rows: list[Row], meta: dict[str, Any]) -> list[str]:
    machine = meta["machine"]
    lines = [
        f"mode: {meta['mode']}, {meta.get('seconds', '?')} s; machine: {machine['nproc']} cores "
        f"({machine['cpu']}), {machine['memory_gib']} GiB; load average at start "
        f"{machine['load_average_at_start'][0]:.2f}, at end {machine['load_average_at_end'][0]:.2f}"
    ]
    if "ingest" in meta:
        m = meta["ingest"]
        lines.append(
            f"ingest: envelope {m['envelope_bytes']:,} B per {BATCH} events; half load "
            f"{m['half_load_events_per_s']:,.0f} events/s; the load generator used {m['loadgen_cpu_share']}"
            f" of a core; the ingest process {m['ingest_cpu_share']} of a core at full load, "
            f"{m['ingest_cpu_per_100k']} CPU-s per 100,000 events"
        )
        lines.append(
            "ingest latency repetitions (p99 ms, AOF rewrites Redis started during it): "
            + ", ".join(f"{p99:.1f} ms ({n})" for p99, n in m["p99_ms_and_redis_aof_rewrites"])
        )
    if "rollup" in meta:
        m = meta["rollup"]
        lines.append(
            f"rollup: {m['records_per_batch']:,.1f} records ({BATCH} events each) per "
            "consumed batch, i.e. per ClickHouse insert, on average (median over repetitions); the rollup "
            f"process used {m['cpu_per_100k']} CPU-s per 100,000 events ({m['cpu_per_100k_spread'][0]}–"
            f"{m['cpu_per_100k_spread'][1]}; its Python and chDB's threads)"
        )
    if "e2e" in meta:
        m = meta["e2e"]
        lines.append(
            f"e2e: offered {m['offered_events_per_s']:,.0f} events/s, ingest accepted "
            f"{m['achieved_events_per_s']:,.0f} events/s; {m['probes']} probes"
        )
    if "alerts" in meta:
        m = meta["alerts"]
        lines.append(
            f"alerts: offered {m['offered_events_per_s']:,.0f} events/s, ingest accepted "
            f"{m['achieved_events_per_s']:,.0f} events/s; {m['probes']} probes"
        )
    if "erasure" in meta:
        m = meta["erasure"]
        lines.append(
            f"erasure: {m['stored_events']:,} events stored, {m['events_per_workspace']:,} per workspace; "
            f"prefill {m['prefill_seconds']} s"
        )
    timings = ", ".join(f"{k} {v} s" for k, v in meta["seconds_per_measurement"].items())
    lines.append(f"seconds per measurement (with its limits): {timings}")
    for name, error in meta["failed"].items():
        lines.append(f"FAILED {name}: {error}")
    return lines
