"""`python -m bench [--smoke] [--profile] [--only NAME,...] [--json PATH]`: measure, print the table."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bench import run
from bench.harness import RESULTS, Bench, start_stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few seconds each, tiny sizes (the test command)")
    parser.add_argument("--profile", action="store_true", help="sample ingest and rollup with py-spy")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(run.MEASUREMENTS)}")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, chDB data)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    only = [m.strip() for m in args.only.split(",") if m.strip()] or list(run.MEASUREMENTS)
    unknown = sorted(set(only) - set(run.MEASUREMENTS))
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(unknown)}")
    start_stack()
    workdir = Path(tempfile.mkdtemp(prefix="spendstream-bench-"))
    bench = Bench(smoke=args.smoke, workdir=workdir, profile=args.profile, keep=args.keep)
    started = time.monotonic()
    rows, meta = asyncio.run(run.run_all(bench, only))
    meta["seconds"] = round(time.monotonic() - started, 1)
    table = run.render(rows)
    print(table)
    for line in run.notes(rows, meta):
        print(line)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.json or RESULTS / ("smoke.json" if args.smoke else "last.json")
    out.write_text(run.to_json(rows, meta))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
