"""`python -m bench.ingest_closed [--reps N]`: ingest's closed-loop rate alone, one line of JSON per repetition.

The first half of `bench.ingest.measure` (one ingest process, 500-event batches over six workspaces, 16 requests
in flight, a 3 s warm-up and 15 s timed per repetition), without the latency runs and the Kafka limits: short
enough to run before and after a change in turn (A B A B) on the same machine, which is how docs/benchmarks.md
compares code. Prints events/s and the ingest process's CPU seconds for each repetition.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from bench.harness import Bench, ServiceProcess, free_port, python_json, start_stack
from bench.ingest import run_sizes


async def _run(reps: int) -> None:
    bench = Bench(smoke=False, workdir=Path(tempfile.mkdtemp(prefix="spendstream-ingest-closed-")))
    ns = await bench.namespace("ingest", workspaces=6)
    svc = ServiceProcess("ingest", bench.env(ns.prefix, free_port()), bench.workdir / "ingest.log")
    await svc.start()
    try:
        sizes = run_sizes(smoke=False)  # the very sizes of `python -m bench --only ingest`
        config = {
            "url": svc.url,
            "keys": [w.ingest for w in ns.workspaces],
            "warmup": sizes["warmup"],
            "duration": sizes["duration"],
            "mode": "closed",
            "concurrency": sizes["concurrency"],
        }
        for _ in range(reps):
            before = await svc.metric("process_cpu_seconds_total")
            run = await python_json("bench.loadgen", config)
            cpu = await svc.metric("process_cpu_seconds_total") - before
            print(json.dumps({"events_per_s": round(run["events_per_s"]), "ingest_cpu_s": round(cpu, 2)}), flush=True)
    finally:
        await svc.stop()
        await bench.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_closed", description=__doc__)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args(argv)
    start_stack()
    asyncio.run(_run(args.reps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
