"""rollup's subcommands of the `spendstream` CLI.

spendstream prices refresh --from FILE|URL [--to PATH]   install a newer LiteLLM price table
spendstream export --format csv|json --output FILE      download the workspace's data, with a progress bar
spendstream revenue import FILE                         import a CSV of revenue records (all of it, or nothing)
spendstream stripe endpoint [--metadata-key KEY]        set the Stripe signing secret (read from the terminal or
                                                        SPENDSTREAM_STRIPE_SIGNING_SECRET, never an argument)
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tqdm import tqdm

from spendstream.common.prices import PriceTable, local_path
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

    revenue = subparsers.add_parser("revenue", help="revenue records for the AI margin")
    revenue_actions = revenue.add_subparsers(dest="action", required=True)
    imports = revenue_actions.add_parser("import", help="import a CSV file of revenue records (all or nothing)")
    imports.add_argument("file", type=Path)
    _server_arguments(imports, "an admin key")
    imports.set_defaults(handler=import_revenue)

    stripe = subparsers.add_parser("stripe", help="Stripe as a revenue source")
    stripe_actions = stripe.add_subparsers(dest="action", required=True)
    endpoint = stripe_actions.add_parser("endpoint", help="set the webhook's signing secret and metadata key")
    endpoint.add_argument("--metadata-key", default="spendstream_customer_id")
    _server_arguments(endpoint, "an admin key")
    endpoint.set_defaults(handler=set_stripe_endpoint)


def _server_arguments(parser: Any, key: str) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("SPENDSTREAM_URL", "http://127.0.0.1:8080"),
        help="rollup's (or `spendstream up`'s) base URL (env SPENDSTREAM_URL)",
    )
    parser.add_argument(
        "--key", default=os.environ.get("SPENDSTREAM_API_KEY", ""), help=f"{key} (env SPENDSTREAM_API_KEY)"
    )


def _send(args: argparse.Namespace, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{args.url.rstrip('/')}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (the operator's URL)
            answer: dict[str, Any] = json.loads(response.read())
            return response.status, answer
    except urllib.error.HTTPError as exc:
        refused: dict[str, Any] = json.loads(exc.read() or b"{}")
        return exc.code, refused


def import_revenue(args: argparse.Namespace) -> int:
    """Print the import's count, or every line error (line and column, never a value); exit 2 on any error."""
    if not args.key:
        print("spendstream: revenue import needs an admin key (--key or SPENDSTREAM_API_KEY)", file=sys.stderr)
        return 2
    status, answer = _send(args, "POST", "/v1/revenue/import", {"csv": args.file.read_text(encoding="utf-8")})
    if status != 200:
        print(f"spendstream: {answer.get('message', f'HTTP {status}')}", file=sys.stderr)
        for detail in answer.get("details") or []:
            print(f"  {detail['field']}: {detail['code']}", file=sys.stderr)
        return 2
    print(json.dumps(answer))
    return 0


def set_stripe_endpoint(args: argparse.Namespace) -> int:
    """The secret never travels as an argument (it would show in `ps` and shell history)."""
    if not args.key:
        print("spendstream: stripe endpoint needs an admin key (--key or SPENDSTREAM_API_KEY)", file=sys.stderr)
        return 2
    secret = os.environ.get("SPENDSTREAM_STRIPE_SIGNING_SECRET") or getpass.getpass("Stripe signing secret: ")
    body = {"signing_secret": secret.strip(), "customer_metadata_key": args.metadata_key}
    status, answer = _send(args, "PUT", "/v1/stripe/endpoint", body)
    if status != 200:
        print(f"spendstream: {answer.get('message', f'HTTP {status}')}", file=sys.stderr)
        return 2
    print(json.dumps(answer))
    return 0


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
