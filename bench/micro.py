"""`python -m bench.micro [--runs N] [--redis URL]`: ingest's per-batch CPU, in-process, one step at a time.

Times the steps the HTTP profile shows on 500-event batches built like bench/events.py builds them: the privacy
guard, validate_events (the pass that explains refusals: guard, then the declared rules event by event) on a clean
batch and on one with a refused event, the fast path (fastpath.check from the body bytes, then the sealed
plaintext events.encode writes), and the Redis dedupe check and mark. Prints the median and p90 of
wall and process-CPU time per batch over `runs` batches; Redis' own CPU is not in the process figure.
It uses the Redis at `--redis` under a throwaway key prefix it deletes afterwards; nothing else is started.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench.events import BodyTemplate
from spendstream.common.events import encode, validate_events
from spendstream.guard import check_event
from spendstream.ingest import fastpath
from spendstream.ingest.dedupe import Deduplicator


def row(name: str, walls: list[float], cpus: list[float], width: int = 22) -> str:
    """One printed line: median and p90 wall time, median CPU time, in ms (bench.rollup_micro uses it too)."""

    def ms(values: list[float], q: int) -> str:
        value = statistics.quantiles(values, n=10)[q - 1] if q else statistics.median(values)
        return f"{value * 1e3:7.2f}"

    return f"{name:<{width}} wall median {ms(walls, 0)} ms  p90 {ms(walls, 9)} ms   cpu median {ms(cpus, 0)} ms"


def time_sync(runs: int, step: Callable[[int], object]) -> tuple[list[float], list[float]]:
    walls: list[float] = []
    cpus: list[float] = []
    for i in range(runs):
        w, c = time.perf_counter(), time.process_time()
        step(i)
        cpus.append(time.process_time() - c)
        walls.append(time.perf_counter() - w)
    return walls, cpus


async def _time_async(runs: int, step: Callable[[int], Awaitable[object]]) -> tuple[list[float], list[float]]:
    walls: list[float] = []
    cpus: list[float] = []
    for i in range(runs):
        w, c = time.perf_counter(), time.process_time()
        await step(i)
        cpus.append(time.process_time() - c)
        walls.append(time.perf_counter() - w)
    return walls, cpus


def _bodies(runs: int) -> list[bytes]:
    template = BodyTemplate()
    return [template.body(f"b{i}") for i in range(runs)]


async def _dedupe(runs: int, url: str, batches: list[list[Any]]) -> list[str]:
    redis = aioredis.Redis.from_url(url)
    prefix = f"bench-micro-{uuid.uuid4().hex[:8]}:"
    dedupe = Deduplicator(redis, prefix, 3600)
    ids = [[e["event_id"] for e in batch] for batch in batches]
    try:
        await dedupe.seen("ws_bench", ids[0])  # connect (and load any script) outside the timing
        await dedupe.mark("ws_bench", ids[0][:1])
        seen = await _time_async(runs, lambda i: dedupe.seen("ws_bench", ids[i]))
        mark = await _time_async(runs, lambda i: dedupe.mark("ws_bench", ids[i]))
        again = await _time_async(runs, lambda i: dedupe.seen("ws_bench", ids[i]))
        return [row("dedupe.seen (new)", *seen), row("dedupe.mark", *mark), row("dedupe.seen (all seen)", *again)]
    finally:
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            await redis.delete(key)
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--only", default="guard,validate,fast,dedupe")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    bodies = _bodies(args.runs)
    batches = [orjson.loads(body)["events"] for body in bodies]
    now, max_age = datetime.now(UTC), timedelta(days=365)
    lines: list[str] = []
    if "guard" in only:
        lines.append(row("guard (check_event)", *time_sync(args.runs, lambda i: [check_event(e) for e in batches[i]])))
    if "validate" in only:
        lines.append(row("validate_events", *time_sync(args.runs, lambda i: validate_events(batches[i], now, max_age))))
        refused = [[{**batch[0], "provider": "OpenAI"}, *batch[1:]] for batch in batches]
        lines.append(
            row("validate (1 refused)", *time_sync(args.runs, lambda i: validate_events(refused[i], now, max_age)))
        )
    if "fast" in only:
        lines.append(
            row("fastpath.check", *time_sync(args.runs, lambda i: fastpath.check(bodies[i], now, max_age, str)))
        )
        sealed = [c.events if c else [] for c in (fastpath.check(body, now, max_age, str) for body in bodies)]
        lines.append(row("events.encode", *time_sync(args.runs, lambda i: encode(sealed[i]))))
    if "dedupe" in only:
        lines.extend(asyncio.run(_dedupe(args.runs, args.redis, batches)))
    print(f"per 500-event batch, {args.runs} runs")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
