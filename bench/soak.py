"""`python -m bench.soak [--minutes 10] [--rate 200]`: the four services under a steady load for a long while.

Starts the stack (scripts/stack.sh start) and each service as its own process (`spendstream run SERVICE`, on
this run's own topics, Redis prefix and KEK), streams events over HTTP at `--rate` events/s, and every 30 s
prints each process's resident memory (RSS) and the consumer lag of rollup's and alerts' groups (committed
offsets vs end offsets of usage.events.v1). When the load stops it waits for the lag to drain, then prints the
summary: memory growth per service (first sample after warm-up to the last), the largest lag seen and the final
lag. Leaks and slow drift show as growth that does not level off, or a lag that climbs from sample to sample.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.harness import Bench, ServiceProcess, free_port, start_stack
from spendstream.common.topics import USAGE_EVENTS, topic_name

SAMPLE_SECONDS = 30.0
BATCH = 50
SERVICES = ("ingest", "rollup", "alerts", "retention")
GROUPS = ("spendstream-rollup", "spendstream-alerts")


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def lags(bootstrap: str, prefix: str) -> dict[str, int]:
    """Records of usage.events.v1 each group has not committed past, summed over partitions."""
    topic = topic_name(USAGE_EVENTS, prefix)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(partitions)
        out: dict[str, int] = {}
        for group in GROUPS:
            committed = await admin.list_consumer_group_offsets(f"{prefix}{group}")
            total = 0
            for tp in partitions:
                meta = committed.get(tp)
                total += ends[tp] - (meta.offset if meta is not None and meta.offset >= 0 else 0)
            out[group.removeprefix("spendstream-")] = total
        return out
    finally:
        await admin.close()
        await consumer.stop()


def _event(n: int) -> dict[str, Any]:
    return {
        "event_id": f"soak-{uuid.uuid4().hex}",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 800 + n % 400,
        "output_tokens": 150,
        "latency_ms": 400,
        "cost_usd": 0.0004,
        "timestamp": datetime.now(UTC).isoformat(),
        "tags": {"feature": f"f{n % 7}", "customer_id": f"c{n % 50}"},
    }


class Load:
    """Open loop: one batch every BATCH/rate seconds, round-robin over the workspaces, whatever the answers."""

    def __init__(self, url: str, keys: list[str], rate: float) -> None:
        self.url, self.keys, self.rate = url, keys, rate
        self.accepted = 0
        self.failed = 0
        self._pending: set[asyncio.Task[None]] = set()

    async def run(self, until: float) -> None:
        interval = BATCH / self.rate
        next_at = time.monotonic()
        n = 0
        async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=64)) as client:
            while time.monotonic() < until:
                task = asyncio.create_task(self._send(client, self.keys[n % len(self.keys)], n))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
                n += 1
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*self._pending)

    async def _send(self, client: httpx.AsyncClient, key: str, n: int) -> None:
        body = {"events": [_event(n * BATCH + i) for i in range(BATCH)]}
        try:
            r = await client.post(f"{self.url}/v1/events", json=body, headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError:
            self.failed += 1
            return
        if r.status_code == 202:
            self.accepted += int(r.json()["accepted"])
        else:
            self.failed += 1


async def soak(minutes: float, rate: float, keep: bool) -> int:
    start_stack()
    bench = Bench(smoke=False, workdir=Path(tempfile.mkdtemp(prefix="spendstream-soak-")), keep=keep)
    procs: list[ServiceProcess] = []
    try:
        ns = await bench.namespace("soak", 3)
        for service in SERVICES:
            port = free_port()
            extra = {"SPENDSTREAM_DATA_DIR": str(bench.workdir / service)}
            procs.append(ServiceProcess(service, bench.env(ns.prefix, port, **extra), bench.workdir / f"{service}.log"))
        await asyncio.gather(*(p.start() for p in procs))
        load = Load(procs[0].url, [w.ingest for w in ns.workspaces], rate)
        started = time.monotonic()
        until = started + minutes * 60
        sender = asyncio.create_task(load.run(until))
        samples: list[tuple[float, dict[str, float], dict[str, int]]] = []
        print(f"soak: {minutes:g} min at {rate:g} events/s; services {', '.join(SERVICES)}; prefix {ns.prefix}")
        print(
            f"{'t (s)':>6}  " + "  ".join(f"{s + ' MiB':>14}" for s in SERVICES) + "   lag rollup  lag alerts"
            "   accepted"
        )
        while True:
            await asyncio.sleep(min(SAMPLE_SECONDS, max(0.0, until - time.monotonic())) or SAMPLE_SECONDS)
            memory = {p.service: rss_mib(p.pid) for p in procs}
            lag = await lags(bench.kafka, ns.prefix)
            t = time.monotonic() - started
            samples.append((t, memory, lag))
            print(
                f"{t:6.0f}  "
                + "  ".join(f"{memory[s]:14.1f}" for s in SERVICES)
                + f"   {lag['rollup']:10d}  {lag['alerts']:10d}   {load.accepted:8d}",
                flush=True,
            )
            if time.monotonic() >= until:
                break
        await sender
        drained_in: float | None = None
        drain_start = time.monotonic()
        final = await lags(bench.kafka, ns.prefix)
        while any(final.values()) and time.monotonic() - drain_start < 120:
            await asyncio.sleep(1.0)
            final = await lags(bench.kafka, ns.prefix)
        if not any(final.values()):
            drained_in = time.monotonic() - drain_start
        _summary(samples, final, drained_in, load, minutes)
        return 0 if not any(final.values()) and load.failed == 0 else 1
    finally:
        for p in procs:
            await p.stop()
        await bench.cleanup()


def _summary(
    samples: list[tuple[float, dict[str, float], dict[str, int]]],
    final: dict[str, int],
    drained_in: float | None,
    load: Load,
    minutes: float,
) -> None:
    # The first sample is taken after 30 s of load (imports, table replays and first batches are done by then).
    first, last = samples[0], samples[-1]
    print("\nsummary")
    print(
        f"  load: {load.accepted} events accepted in {minutes:g} min ({load.accepted / (minutes * 60):.0f}/s), "
        f"{load.failed} requests failed"
    )
    for service in SERVICES:
        peak = max(s[1][service] for s in samples)
        growth = last[1][service] - first[1][service]
        print(
            f"  {service:<9} RSS {first[1][service]:.1f} MiB at {first[0]:.0f}s -> {last[1][service]:.1f} MiB at "
            f"{last[0]:.0f}s (growth {growth:+.1f} MiB, peak {peak:.1f} MiB)"
        )
    for group in ("rollup", "alerts"):
        print(f"  lag {group:<7} max {max(s[2][group] for s in samples)} records, final {final[group]}")
    drained = f"{drained_in:.1f} s after the load stopped" if drained_in is not None else "NOT within 120 s"
    print(f"  backlog drained {drained}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="duration of the load (default 10)")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second (default 200)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (service logs, chDB data)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0:
        parser.error("--minutes and --rate must be positive")
    return asyncio.run(soak(args.minutes, args.rate, args.keep))


if __name__ == "__main__":
    raise SystemExit(main())
