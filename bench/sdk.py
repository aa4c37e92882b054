"""`python -m bench.sdk [--smoke]`: the Python SDK's cost to the app and one Meter's sustained rate into ingest.

1. **track() alone**: the caller's wall time per `track()` (build, the server's rules, the privacy guard, queue),
   over realistic calls (3 models, 5 features, 1,000 customer ids, varying tokens, cached tokens on a third of
   them), with no sender at work (the queue is emptied every 500 events, untimed, as a sender keeps it short).
   The median and best wall time of the chunks, and the median CPU time of the calling thread.
2. **One Meter into a local ingest**: one thread tracks as fast as it can (pausing while more than 50,000 events
   wait, so memory stays bounded, and yielding the GIL every 500 calls as an app does between calls) and one
   Meter sends everything to ingest, run as its own process
   (`spendstream run ingest`, the bench's isolation, the per-workspace limiter lifted). The rate is the events
   the server answered for (stats.sent) over the time from the first track() to the end of flush(); also the
   wall time per track() in that run (the sender thread competes for the GIL) and the app process's CPU per
   event (track and sending: JSON, gzip, HTTP).

Prints one JSON line per figure and a summary; on a shared 2-core machine the figures move with the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import Bench, ServiceProcess, free_port, start_stack
from spendstream_sdk import Meter

MODELS = (("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"))
FEATURES = ("chat", "search", "summary", "agent", "embeddings")
CUSTOMERS = tuple(f"cust-{i}" for i in range(1000))


def calls(n: int, seed: int = 7) -> list[tuple[str, str, int, int, int, int | None, dict[str, str]]]:
    """n realistic calls, made before timing so the figures are track()'s alone."""
    rng = random.Random(seed)
    made = []
    for i in range(n):
        provider, model = MODELS[i % len(MODELS)]
        tokens = rng.randint(50, 8000)
        cached = tokens // 2 if i % 3 == 0 else None
        tags = {"feature": FEATURES[i % len(FEATURES)], "customer_id": rng.choice(CUSTOMERS), "environment": "prod"}
        made.append((provider, model, tokens, rng.randint(1, 800), rng.randint(100, 5000), cached, tags))
    return made


def track_all(
    meter: Meter, batch: list[tuple[str, str, int, int, int, int | None, dict[str, str]]], block: int = 500
) -> tuple[float, float]:
    """Wall and CPU (this thread's) seconds to track every call of `batch` on `meter`, in blocks of `block`.

    Between blocks (untimed) the thread yields the GIL once, as an app does between calls (its own I/O): a
    loop of nothing but track() would starve the sender thread of the GIL, which no app does."""
    track = meter.track
    wall = cpu = 0.0
    for start in range(0, len(batch), block):
        w, c = time.perf_counter(), time.thread_time()
        for provider, model, tokens_in, tokens_out, latency, cached, tags in batch[start : start + block]:
            track(
                provider=provider,
                model=model,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                latency_ms=latency,
                cached_input_tokens=cached,
                tags=tags,
            )
        cpu += time.thread_time() - c
        wall += time.perf_counter() - w
        time.sleep(0)
    return wall, cpu


def track_alone(chunks: int, per_chunk: int) -> dict[str, Any]:
    """µs per track() with no sender at work: each chunk on its own meter (to an address nothing listens on, with
    a flush interval longer than the run), whose queue is emptied after every 500 events (untimed), as a sender
    keeps it short; closed after the timing."""
    batch = calls(per_chunk)
    dead = f"http://127.0.0.1:{free_port()}"
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(chunks + 1):  # the first chunk warms the memos up, as any app's first calls do
        meter = Meter(url=dead, api_key="bench", flush_interval=3600, max_queue=per_chunk + 1)
        wall = cpu = 0.0
        for start in range(0, per_chunk, 500):
            w, c = track_all(meter, batch[start : start + 500])
            wall, cpu = wall + w, cpu + c
            meter._outbox.items.clear()  # what the sender's take() does, off the caller's clock
        meter.close(timeout=0)
        walls.append(wall / per_chunk * 1e6)
        cpus.append(cpu / per_chunk * 1e6)
    return {
        "figure": "track() alone",
        "us_per_event_median": round(statistics.median(walls[1:]), 2),
        "us_per_event_best": round(min(walls[1:]), 2),
        "cpu_us_per_event_median": round(statistics.median(cpus[1:]), 2),
        "chunks": chunks,
        "events_per_chunk": per_chunk,
    }


def sustained(url: str, key: str, total: int, senders: int) -> dict[str, Any]:
    """One Meter sending `total` events to ingest as fast as it takes them."""
    batch = calls(20_000, seed=11)
    meter = Meter(url=url, api_key=key, max_queue=total + 1, senders=senders)
    tracking = 0.0
    cpu_start, started = time.process_time(), time.perf_counter()
    done = 0
    while done < total:
        while meter.stats.queued > 50_000:
            time.sleep(0.001)
        part = batch[: min(len(batch), total - done)]
        wall, _ = track_all(meter, part)
        tracking += wall
        done += len(part)
    flushed = meter.flush(timeout=300)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_start
    stats = meter.stats
    meter.close(timeout=10)
    return {
        "figure": f"one Meter into a local ingest, {senders} sender thread(s)",
        "senders": senders,
        "events_per_s": round(stats.sent / elapsed),
        "sent": stats.sent,
        "dropped": stats.dropped,
        "rejected": stats.rejected,
        "retried": stats.retried,
        "flushed": flushed,
        "seconds": round(elapsed, 2),
        "us_per_track_while_sending": round(tracking / total * 1e6, 2),
        "app_cpu_us_per_event": round(cpu / total * 1e6, 2),
    }


async def _run(smoke: bool, senders: list[int]) -> list[dict[str, Any]]:
    figures = [await asyncio.to_thread(track_alone, 3 if smoke else 10, 20_000 if smoke else 50_000)]
    bench = Bench(smoke=smoke, workdir=Path(tempfile.mkdtemp(prefix="spendstream-bench-sdk-")))
    ns = await bench.namespace("sdk", workspaces=1)
    svc = ServiceProcess("ingest", bench.env(ns.prefix, free_port()), bench.workdir / "logs" / "ingest.log")
    await svc.start()
    try:
        for count in senders:
            cpu_before = await svc.metric("process_cpu_seconds_total")
            total = 50_000 if smoke else 150_000
            result = await asyncio.to_thread(sustained, svc.url, ns.workspaces[0].ingest, total, count)
            result["ingest_cpu_share"] = round(
                (await svc.metric("process_cpu_seconds_total") - cpu_before) / result["seconds"], 2
            )
            figures.append(result)
    finally:
        await svc.stop()
        await bench.cleanup()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sdk", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--senders", default="1,2", help="sender threads of the sustained runs, one run each")
    args = parser.parse_args(argv)
    start_stack()
    load = os.getloadavg()[0]
    figures = asyncio.run(_run(args.smoke, [int(n) for n in args.senders.split(",")]))
    for figure in figures:
        print(json.dumps(figure), flush=True)
    alone, *runs = figures
    print(
        f"track(): {alone['us_per_event_median']} µs per event alone (best chunk {alone['us_per_event_best']}, "
        f"{alone['cpu_us_per_event_median']} µs of CPU)"
    )
    for run in runs:
        print(
            f"one Meter, {run['senders']} sender(s): {run['events_per_s']:,} events/s into a local ingest; "
            f"track() {run['us_per_track_while_sending']} µs meanwhile; {run['app_cpu_us_per_event']} µs of app "
            f"CPU per event; ingest {run['ingest_cpu_share']} of a core"
        )
    print(f"{os.cpu_count()} cores, load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
