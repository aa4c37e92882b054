"""End to end: an accepted event (its 202 received) until it is visible in `GET /v1/usage`, at a fixed load.

ingest and rollup run as separate processes; bench.loadgen offers the background load (open loop) to six
workspaces, while this process sends one probe event every `probe_every` seconds to a seventh workspace, each
with its own `customer_id`, and polls `/v1/usage?group_by=customer_id` of that workspace every 50 ms: a probe's
latency is the time from its 202 to the first answer that lists it (resolution: the poll interval).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.harness import Bench, ServiceProcess, background_load, free_port, start_all
from bench.stats import Spread, percentile

POLL_SECONDS = 0.05


@dataclasses.dataclass(frozen=True)
class E2EFigures:
    rate: float  # events/s offered
    achieved: Spread  # events/s accepted by ingest during the runs
    p50: Spread  # ms
    p99: Spread
    probes: int


def _sizes(smoke: bool) -> dict[str, Any]:
    if smoke:
        return {"reps": 1, "rate": 2_000.0, "warmup": 1.0, "duration": 2.0, "probe_every": 0.25}
    return {"reps": 3, "rate": 20_000.0, "warmup": 5.0, "duration": 20.0, "probe_every": 0.25}


async def probe_latencies(
    ingest_url: str, rollup_url: str, ingest_key: str, read_key: str, seconds: float, every: float, tag: str
) -> list[float]:
    """Send probes for `seconds`, then wait (at most 30 s) until every probe is visible; latencies in ms."""
    accepted: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = asyncio.Event()

    async def poll(client: httpx.AsyncClient) -> None:
        while not done.is_set() or len(seen) < len(accepted):
            response = await client.get(
                f"{rollup_url}/v1/usage",
                params={"group_by": "customer_id"},
                headers={"authorization": f"Bearer {read_key}"},
            )
            now = time.perf_counter()
            if response.status_code == 200:
                for row in response.json()["rows"]:
                    cid = row.get("customer_id", "")
                    if cid in accepted and cid not in seen:
                        seen[cid] = now - accepted[cid]
            await asyncio.sleep(POLL_SECONDS)

    async with httpx.AsyncClient(timeout=60.0) as client:
        poller = asyncio.create_task(poll(client))
        end = time.perf_counter() + seconds
        k = 0
        while time.perf_counter() < end:
            cid = f"probe-{tag}-{k}"
            event = {
                "event_id": f"{tag}-{k}",
                "provider": "openai",
                "model": "gpt-4o-mini",
                "input_tokens": 10,
                "output_tokens": 5,
                "latency_ms": 100,
                "cost_usd": 0.001,
                "timestamp": datetime.now(UTC).isoformat(),
                "tags": {"customer_id": cid},
            }
            response = await client.post(
                f"{ingest_url}/v1/events", json={"events": [event]}, headers={"authorization": f"Bearer {ingest_key}"}
            )
            if response.status_code == 202:
                accepted[cid] = time.perf_counter()
            k += 1
            await asyncio.sleep(every)
        done.set()
        try:
            await asyncio.wait_for(poller, 30.0)
        except TimeoutError:
            poller.cancel()
    missing = len(accepted) - len(seen)
    if missing:
        raise RuntimeError(f"{missing} of {len(accepted)} probes never became visible within 30 s")
    return [1000 * v for v in seen.values()]


async def measure(bench: Bench) -> E2EFigures:
    sizes = _sizes(bench.smoke)
    sizes["rate"] = bench.fixed_load(sizes["rate"], "ingest", "rollup")
    ns = await bench.namespace("e2e", workspaces=7)
    load, probe = ns.workspaces[:6], ns.workspaces[6]
    ingest = ServiceProcess("ingest", bench.env(ns.prefix, free_port()), bench.workdir / "logs" / "e2e-ingest.log")
    rollup = ServiceProcess(
        "rollup",
        bench.env(ns.prefix, free_port(), SPENDSTREAM_CLICKHOUSE_URL=f"chdb://{bench.workdir / 'ch-e2e'}"),
        bench.workdir / "logs" / "e2e-rollup.log",
    )
    await start_all(ingest, rollup)
    p50s, p99s, achieved, probes = [], [], [], 0
    try:
        for rep in range(sizes["reps"]):
            background = background_load(ingest.url, [w.ingest for w in load], sizes)
            await asyncio.sleep(sizes["warmup"])
            latencies = await probe_latencies(
                ingest.url, rollup.url, probe.ingest, probe.read, sizes["duration"], sizes["probe_every"], f"r{rep}"
            )
            result = await background
            achieved.append(result["events_per_s"])
            p50s.append(percentile(latencies, 50))
            p99s.append(percentile(latencies, 99))
            probes += len(latencies)
    finally:
        await rollup.stop()
        await ingest.stop()
    return E2EFigures(sizes["rate"], Spread.of(achieved), Spread.of(p50s), Spread.of(p99s), probes)
