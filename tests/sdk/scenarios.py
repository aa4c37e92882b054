"""Scenarios a test runs in a fresh Python process (`python -m tests.sdk.scenarios NAME URL`), where forking
and interpreter exit are safe to exercise. Each prints one JSON line: the ids it tracked and the meters' stats."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from typing import Any

from spendstream_sdk import AsyncMeter, Meter


def _track(meter: Meter | AsyncMeter, n: int, feature: str) -> list[str]:
    return [
        meter.track(
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=10,
            output_tokens=1,
            latency_ms=5,
            tags={"feature": feature},
        )
        for _ in range(n)
    ]


def fork(url: str) -> dict[str, Any]:
    """The parent tracks 3 events that wait in its queue, forks; the child tracks 2 and flushes; then the parent
    flushes. Each process must send its own events, once."""
    meter = Meter(url=url, api_key="k", flush_interval=60)
    parent_ids = _track(meter, 3, "parent")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        child_ids = _track(meter, 2, "child")
        flushed = meter.flush(timeout=20)
        report = {"ids": child_ids, "flushed": flushed, "stats": dataclasses.asdict(meter.stats)}
        os.write(write, json.dumps(report).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = json.loads(pipe.read())
    os.waitpid(pid, 0)
    flushed = meter.flush(timeout=20)
    parent = {"ids": parent_ids, "flushed": flushed, "stats": dataclasses.asdict(meter.stats)}
    meter.close()
    return {"parent": parent, "child": child}


def exit_without_close(url: str) -> dict[str, Any]:
    """Events still queued when the interpreter exits are sent by the exit hook (a Meter and an AsyncMeter whose
    loop has ended)."""
    meter = Meter(url=url, api_key="k", flush_interval=60)
    threaded = _track(meter, 4, "thread")
    async_meter = AsyncMeter(url=url, api_key="k", flush_interval=60)

    async def main() -> list[str]:
        return _track(async_meter, 3, "async")

    on_loop = asyncio.run(main())
    return {"ids": threaded + on_loop}


if __name__ == "__main__":
    name, target = sys.argv[1], sys.argv[2]
    print(json.dumps({"fork": fork, "exit_without_close": exit_without_close}[name](target)), flush=True)
