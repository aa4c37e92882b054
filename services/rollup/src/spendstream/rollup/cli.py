"""rollup's subcommands of the `spendstream` CLI.

spendstream prices refresh --from FILE|URL [--to PATH]   install a newer LiteLLM price table
spendstream prices recompute --from DAY --to DAY [--workspace WS]   re-price stored computed costs (recompute.py)
spendstream export --format csv|json --output FILE      download the workspace's data, with a progress bar
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

from tqdm import tqdm

from spendstream.common import prices as price_tables
from spendstream.common.prices import PriceTable, local_path
from spendstream.rollup import recompute
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.recompute import Repricer, Request, TablePricing
from spendstream.rollup.schema import migrate
from spendstream.rollup.settings import RollupSettings

MAX_PRICE_TABLE_BYTES = 64 * 1024 * 1024
MIN_PRICED_MODELS = 50  # a truncated or wrong download must not replace a good table


def register(subparsers: Any) -> None:
    prices = subparsers.add_parser("prices", help="the LiteLLM price table rollup computes costs from")
    actions = prices.add_subparsers(dest="action", required=True)
    refresh = actions.add_parser("refresh", help="validate a newer price table and install it")
    refresh.add_argument("--from", dest="source", required=True, help="a file path or an http(s) URL")
    refresh.add_argument(
        "--to",
        dest="target",
        type=Path,
        default=None,
        help="where to write it (default: <SPENDSTREAM_DATA_DIR>/prices/, which rollup reads first at start)",
    )
    refresh.set_defaults(handler=refresh_prices)

    recompute = actions.add_parser(
        "recompute",
        help="re-price the computed costs of a UTC day range (raw events and rollups) under the prices in force now",
    )
    recompute.add_argument("--from", dest="start", required=True, type=_day, help="first UTC day, YYYY-MM-DD")
    recompute.add_argument("--to", dest="end", required=True, type=_day, help="last UTC day, inclusive")
    recompute.add_argument(
        "--workspace", default=None, help="one workspace (default: the key's; every one with the internal token)"
    )
    recompute.add_argument(
        "--url",
        default=os.environ.get("SPENDSTREAM_URL", "http://127.0.0.1:8080"),
        help="rollup's (or `spendstream up`'s) base URL (env SPENDSTREAM_URL)",
    )
    recompute.add_argument(
        "--key", default=os.environ.get("SPENDSTREAM_API_KEY", ""), help="an admin key (env SPENDSTREAM_API_KEY)"
    )
    recompute.add_argument(
        "--internal-token",
        default=os.environ.get("SPENDSTREAM_INTERNAL_TOKEN", ""),
        help="the operator token (env SPENDSTREAM_INTERNAL_TOKEN): any workspace, or all of them",
    )
    recompute.add_argument(
        "--direct",
        action="store_true",
        help="open the store here instead of asking rollup (rollup stopped, or a ClickHouse server; "
        "see docs/operations.md)",
    )
    recompute.add_argument(
        "--progress", choices=("bar", "lines", "none"), default="bar", help="a progress bar, JSON lines, or nothing"
    )
    recompute.set_defaults(handler=recompute_prices)

    export = subparsers.add_parser("export", help="download every event and rollup row of a workspace")
    export.add_argument("--format", choices=("csv", "json"), default="json")
    export.add_argument("--output", "-o", type=Path, required=True)
    export.add_argument(
        "--url",
        default=os.environ.get("SPENDSTREAM_URL", "http://127.0.0.1:8080"),
        help="rollup's (or `spendstream up`'s) base URL (env SPENDSTREAM_URL)",
    )
    export.add_argument(
        "--key", default=os.environ.get("SPENDSTREAM_API_KEY", ""), help="a read or admin key (env SPENDSTREAM_API_KEY)"
    )
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    export.set_defaults(handler=export_data)


def _read_source(source: str) -> bytes:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=60) as response:  # noqa: S310 (scheme checked above)
            data: bytes = response.read(MAX_PRICE_TABLE_BYTES + 1)
    else:
        data = Path(source).read_bytes()
    if len(data) > MAX_PRICE_TABLE_BYTES:
        raise ValueError(f"price table is larger than {MAX_PRICE_TABLE_BYTES} bytes")
    return data


def _write_atomically(target: Path, data: bytes) -> None:
    """Readers see the old table or the new one, never half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".prices-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refresh_prices(args: argparse.Namespace) -> int:
    """Validate the new table (JSON, enough priced models) before replacing anything; exit 2 if invalid."""
    data = _read_source(args.source)
    try:
        table = PriceTable(json.loads(data), args.source)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        print("spendstream: the source is not a LiteLLM price table (JSON object of models)", file=sys.stderr)
        return 2
    if len(table) < MIN_PRICED_MODELS:
        print(
            f"spendstream: the source prices {len(table)} models per token; refusing (< {MIN_PRICED_MODELS})",
            file=sys.stderr,
        )
        return 2
    target: Path = args.target or local_path(RollupSettings().data_dir)
    _write_atomically(target, data)
    print(
        json.dumps(
            {
                "installed": str(target),
                "priced_models": len(table),
                "note": "running rollup processes pick it up at their next start",
            }
        )
    )
    return 0


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value) if len(value) == 10 else date.fromisoformat("invalid")
    except ValueError:
        raise argparse.ArgumentTypeError("a day is YYYY-MM-DD") from None


class _Shown:
    """Progress shown as a bar (tqdm, on stderr) or as one JSON line per step (for scripts and tests)."""

    def __init__(self, mode: str, description: str) -> None:
        self._mode = mode
        self._bar: tqdm[Any] | None = None
        if mode == "bar":
            self._bar = tqdm(total=0, unit="day", desc=description, file=sys.stderr)

    def __call__(self, progress: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.total = progress["days_total"]
            self._bar.n = progress["days_done"]
            self._bar.set_postfix(events=progress["events_done"], changed=progress["changed"], refresh=False)
            self._bar.refresh()
        elif self._mode == "lines":
            print(json.dumps({"progress": progress}), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def recompute_prices(args: argparse.Namespace) -> int:
    """Re-price through rollup's API (the default: rollup owns the store), or in this process with --direct."""
    if args.start > args.end:
        print("spendstream: --from is after --to", file=sys.stderr)
        return 2
    shown = _Shown(args.progress, f"re-pricing {args.start}..{args.end}")
    try:
        result = _recompute_direct(args, shown) if args.direct else _recompute_remote(args, shown)
    finally:
        shown.close()
    if result is None:
        return 2
    print(json.dumps(result, sort_keys=True))
    return 0 if result["state"] == "done" else 1


def _recompute_direct(args: argparse.Namespace, shown: _Shown) -> dict[str, Any] | None:
    settings = RollupSettings()
    url = settings.resolved_clickhouse_url()
    client = clickhouse_client(url)
    try:
        migrate(client, settings.clickhouse_database, settings.retention_months)
        repricer = Repricer(client, settings.clickhouse_database)
        request = Request(args.start, args.end, args.workspace, f"cli:{getpass.getuser()}")
        pricing = TablePricing(price_tables.load(settings.data_dir))
        return recompute.run(repricer, request, pricing, lambda p: shown(p.jsonable())).jsonable()
    finally:
        client.close()


def _recompute_remote(args: argparse.Namespace, shown: _Shown) -> dict[str, Any] | None:
    body: dict[str, Any] = {"from": args.start.isoformat(), "to": args.end.isoformat()}
    if args.internal_token:
        base, headers = "/internal/v1/prices/recompute", {"X-Internal-Token": args.internal_token}
        if args.workspace:
            body["workspace_id"] = args.workspace
    elif args.key:
        if args.workspace:
            print("spendstream: --workspace needs the internal token; an admin key re-prices its own", file=sys.stderr)
            return None
        base, headers = "/v1/prices/recompute", {"Authorization": f"Bearer {args.key}"}
    else:
        print("spendstream: recompute needs an admin key (--key) or the internal token", file=sys.stderr)
        return None
    root = args.url.rstrip("/")

    def call(path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            root + path, data=data, headers={**headers, "Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (the operator's own URL)
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    try:
        job = call(base, body)
        while job["state"] == "running":
            shown(job)
            time.sleep(0.5)
            job = call(f"{base}/{job['job_id']}")
    except urllib.error.HTTPError as exc:
        print(
            f"spendstream: recompute refused: HTTP {exc.code} {exc.read()[:500].decode(errors='replace')}",
            file=sys.stderr,
        )
        return None
    shown(job)
    return job


def export_data(args: argparse.Namespace) -> int:
    if not args.key:
        print("spendstream: export needs a read key (--key or SPENDSTREAM_API_KEY)", file=sys.stderr)
        return 2
    request = urllib.request.Request(
        f"{args.url.rstrip('/')}/v1/export?format={args.format}", headers={"Authorization": f"Bearer {args.key}"}
    )
    target: Path = args.output
    partial = target.with_name(target.name + ".partial")
    try:
        with (
            urllib.request.urlopen(request, timeout=60) as response,
            partial.open("wb") as out,
            tqdm(unit="B", unit_scale=True, desc=f"export {target.name}", disable=args.quiet, file=sys.stderr) as bar,
        ):
            while chunk := response.read(256 * 1024):
                out.write(chunk)
                bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        partial.unlink(missing_ok=True)
        print(f"spendstream: export refused: HTTP {exc.code}", file=sys.stderr)
        return 2
    except BaseException:
        partial.unlink(missing_ok=True)  # unreachable server, broken stream, Ctrl-C: leave no half file
        raise
    # Renamed only once complete: an interrupted export never looks like a finished one.
    partial.replace(target)
    return 0
