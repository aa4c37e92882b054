"""HTTP load generator, run as its own process: `python -m bench.loadgen '<json config>'`; prints JSON.

Closed loop (`mode: closed`): `concurrency` requests always in flight, for the highest sustained rate.
Open loop (`mode: open`): requests sent on a fixed schedule of `rate` events/s whatever the answers; latency is
measured from the *scheduled* send time, so a stalled server cannot hide its queueing (no coordinated omission).
Only requests that complete inside the measurement window (after `warmup` seconds) are counted.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import orjson

from bench.events import BATCH, BodyTemplate
from bench.stats import percentile

MAX_OUTSTANDING = 512


class Recorder:
    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.latencies: list[float] = []
        self.accepted = 0
        self.statuses: Counter[str] = Counter()

    def record(self, status: str, latency: float, accepted: int, done: float) -> None:
        if self.start <= done <= self.end:
            self.latencies.append(latency * 1000)
            self.accepted += accepted
            self.statuses[status] += 1


async def _post(client: httpx.AsyncClient, template: BodyTemplate, key: str, ids: str) -> tuple[str, int]:
    try:
        response = await client.post("/v1/events", content=template.body(ids),
                                     headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    except httpx.HTTPError as exc:
        return type(exc).__name__, 0
    accepted = int(orjson.loads(response.content).get("accepted", 0)) if response.status_code == 202 else 0
    return str(response.status_code), accepted


async def run(config: dict[str, Any]) -> dict[str, Any]:
    keys: list[str] = config["keys"]
    batch = int(config.get("batch", BATCH))
    template = BodyTemplate(batch)
    run_id = uuid.uuid4().hex[:10]
    concurrency = int(config.get("concurrency", 16))
    limits = httpx.Limits(max_connections=max(concurrency, MAX_OUTSTANDING), max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=config["url"], timeout=30.0, limits=limits) as client:
        began = time.perf_counter()
        rec = Recorder(began + float(config["warmup"]), began + float(config["warmup"]) + float(config["duration"]))
        if config["mode"] == "closed":
            async def worker(w: int) -> None:
                seq = 0
                while time.perf_counter() < rec.end:
                    seq += 1
                    sent = time.perf_counter()
                    status, accepted = await _post(client, template, keys[(w + seq) % len(keys)], f"{run_id}{w}x{seq}")
                    done = time.perf_counter()
                    rec.record(status, done - sent, accepted, done)

            await asyncio.gather(*(worker(w) for w in range(concurrency)))
        else:
            interval = batch / float(config["rate"])
            gate = asyncio.Semaphore(MAX_OUTSTANDING)
            tasks: set[asyncio.Task[None]] = set()

            async def one(k: int, scheduled: float) -> None:
                async with gate:
                    status, accepted = await _post(client, template, keys[k % len(keys)], f"{run_id}x{k}")
                done = time.perf_counter()
                rec.record(status, done - scheduled, accepted, done)

            k = 0
            while True:
                scheduled = began + k * interval
                if scheduled > rec.end:
                    break
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(one(k, scheduled))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                k += 1
            if tasks:
                await asyncio.wait(tasks, timeout=30.0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    window = rec.end - rec.start
    return {
        "events_per_s": rec.accepted / window, "requests": len(rec.latencies),
        "p50_ms": percentile(rec.latencies, 50), "p99_ms": percentile(rec.latencies, 99),
        "max_ms": max(rec.latencies, default=float("nan")), "statuses": dict(rec.statuses),
        "cpu_seconds": usage.ru_utime + usage.ru_stime, "wall_seconds": time.perf_counter() - began,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
