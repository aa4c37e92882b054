"""rollup's subcommands of the `spendstream` CLI.

spendstream prices refresh [--from DAY] [--url URL | --file PATH] [--approve]   add a price version
spendstream prices versions | held | approve ID              the versions; approve a held one
spendstream prices rates set WS RATE_ID --from DAY (--discount PCT | --markup PCT | --input X --output Y ...)
spendstream prices rates list WS | delete WS RATE_ID         a workspace's negotiated rates
spendstream prices recompute --from DAY --to DAY [--workspace WS]   re-price stored computed costs (recompute.py)
spendstream export --format csv|json --output FILE           download the workspace's data, with a progress bar
spendstream revenue import FILE                              import a CSV of revenue records (all of it, or nothing)
spendstream audit verify WORKSPACE                           verify a workspace's audit chain (audit_cli.py)
spendstream stripe endpoint [--metadata-key KEY]             set the Stripe signing secret (read from the terminal
                                                             or SPENDSTREAM_STRIPE_SIGNING_SECRET, never an argument)

The price commands are an operator's: they read and write the pricing topics on Kafka directly (as
`spendstream workspace create` does), and every service's book follows within a poll. `recompute` asks rollup,
which owns ClickHouse (or, with --direct, opens the store itself).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from spendstream.common.kafka import make_broker
from spendstream.common.price_holds import approved, propose, read_source
from spendstream.common.price_replica import PricePublisher, ReplayedPriceBook
from spendstream.common.pricebook import PriceBook, TenantRate
from spendstream.rollup import audit_cli, recompute
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.recompute import BookPricing, Repricer, Request
from spendstream.rollup.schema import migrate
from spendstream.rollup.settings import RollupSettings


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError("a UTC day is YYYY-MM-DD") from None


def _decimal(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError("a decimal number (e.g. 0.0000025)") from None


def register(subparsers: Any) -> None:
    audit_cli.register(subparsers)
    prices = subparsers.add_parser("prices", help="the price book: dated price versions, held tables, tenant rates")
    actions = prices.add_subparsers(dest="action", required=True)
    refresh = actions.add_parser("refresh", help="add a price version from a LiteLLM-format table")
    refresh.add_argument(
        "--from", dest="effective_from", type=_day, default=None, help="the UTC day it holds from (default: tomorrow)"
    )
    source = refresh.add_mutually_exclusive_group()
    source.add_argument("--url", help="an http(s) URL (default: SPENDSTREAM_PRICES_URL)")
    source.add_argument("--file", type=Path, help="a file path")
    refresh.add_argument(
        "--approve", action="store_true", help="make it active even where it would be held (an operator's decision)"
    )
    refresh.set_defaults(handler=lambda args: _run(_refresh, args))
    versions = actions.add_parser("versions", help="every price version, oldest first")
    versions.set_defaults(handler=lambda args: _run(_versions, args))
    held = actions.add_parser("held", help="the versions held for approval, with why")
    held.set_defaults(handler=lambda args: _run(_held, args))
    approve = actions.add_parser("approve", help="approve a held version: it prices events from its day")
    approve.add_argument("version_id")
    approve.set_defaults(handler=lambda args: _run(_approve, args))

    rates = actions.add_parser("rates", help="a workspace's negotiated rates").add_subparsers(
        dest="rates_action", required=True
    )
    set_rate = rates.add_parser("set", help="set (create or replace) one rate")
    set_rate.add_argument("workspace_id")
    set_rate.add_argument("rate_id")
    set_rate.add_argument("--from", dest="effective_from", type=_day, required=True, help="the UTC day it holds from")
    set_rate.add_argument("--provider", default=None, help="only this provider's events (default: any)")
    set_rate.add_argument("--model", default="*", help="a glob of model names (default: *)")
    kind = set_rate.add_mutually_exclusive_group(required=True)
    kind.add_argument("--discount", type=_decimal, help="percent off the table's price")
    kind.add_argument("--markup", type=_decimal, help="percent over the table's price")
    kind.add_argument("--input", type=_decimal, help="fixed USD per input token (with --output)")
    set_rate.add_argument("--output", type=_decimal, help="fixed USD per output token")
    set_rate.add_argument("--cached", type=_decimal, help="fixed USD per cached input token (default: --input)")
    set_rate.add_argument("--cache-write", type=_decimal, help="fixed USD per cache-write token (default: --input)")
    set_rate.set_defaults(handler=lambda args: _run(_set_rate, args))
    list_rates = rates.add_parser("list", help="a workspace's rates")
    list_rates.add_argument("workspace_id")
    list_rates.set_defaults(handler=lambda args: _run(_list_rates, args))
    delete_rate = rates.add_parser("delete", help="delete one rate")
    delete_rate.add_argument("workspace_id")
    delete_rate.add_argument("rate_id")
    delete_rate.set_defaults(handler=lambda args: _run(_delete_rate, args))

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


Command = Callable[[argparse.Namespace, ReplayedPriceBook, PricePublisher], Awaitable[int]]


def _run(command: Command, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with _pricing() as (pricing, publisher):
            return await command(args, pricing, publisher)

    return asyncio.run(go())


@asynccontextmanager
async def _pricing() -> AsyncIterator[tuple[ReplayedPriceBook, PricePublisher]]:
    settings = RollupSettings()
    broker = make_broker(settings, "cli")
    await broker.connect()
    pricing = ReplayedPriceBook(settings)
    try:
        await pricing.start()
        yield pricing, PricePublisher(broker, settings.topic_prefix)
    finally:
        await pricing.stop()
        await broker.stop()


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


async def _refresh(args: argparse.Namespace, pricing: ReplayedPriceBook, publisher: PricePublisher) -> int:
    """Validate the table and add it as a version (held unless --approve where the checks object); exit 2 if
    it is not a valid table. The CLI does not see which models are in use, so any removed model holds."""
    source = str(args.file) if args.file is not None else args.url or RollupSettings().prices_url
    if not source:
        print("spendstream: give --url or --file (or set SPENDSTREAM_PRICES_URL)", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    try:
        raw = read_source(source)
        record = propose(pricing.book, raw, source, args.effective_from or now.date() + timedelta(days=1), None, now)
    except ValueError as exc:
        print(f"spendstream: {exc}; nothing added", file=sys.stderr)
        return 2
    if record is None:
        _print({"added": None, "note": "the table prices as the version in force then, or is already there"})
        return 0
    if record.meta.status == "held" and args.approve:
        record = record.with_meta(
            record.meta.model_copy(update={"status": "active", "approved_by": "cli", "approved_at": now})
        )
    await publisher.version(record)
    await pricing.catch_up()
    _print({"added": record.meta.model_dump(mode="json")})
    return 0


async def _versions(args: argparse.Namespace, pricing: ReplayedPriceBook, publisher: PricePublisher) -> int:
    in_force, _ = pricing.book.table_at(datetime.now(UTC).date())
    _print({"in_force": in_force, "versions": [v.model_dump(mode="json") for v in pricing.book.versions()]})
    return 0


async def _held(args: argparse.Namespace, pricing: ReplayedPriceBook, publisher: PricePublisher) -> int:
    _print([v.model_dump(mode="json") for v in pricing.book.held()])
    return 0


async def _approve(args: argparse.Namespace, pricing: ReplayedPriceBook, publisher: PricePublisher) -> int:
    try:
        record = approved(pricing.book, args.version_id, "cli", datetime.now(UTC))
    except KeyError:
        print(f"spendstream: no held price version {args.version_id}", file=sys.stderr)
        return 2
    await publisher.version(record)
    await pricing.catch_up()
    _print({"approved": record.meta.model_dump(mode="json")})
    return 0


async def _set_rate(args: argparse.Namespace, pricing: ReplayedPriceBook, publisher: PricePublisher) -> int:
    kind = "discount" if args.discount is not None else "markup" if args.markup is not None else "fixed"
    try:
        rate = TenantRate(
            rate_id=args.rate_id,
            workspace_id=args.workspace_id,
            provider=args.provider,
            model=args.model,
            effective_from=args.effective_from,
            kind=kind,
            percent=args.discount if kind == "discount" else args.markup,
            input=args.input,
            output=args.output,
            cached_input=args.cached,
            cache_write=args.cache_write,
            created_at=datetime.now(UTC),
            created_by="cli",
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        print(f"spendstream: invalid rate: {where + ': ' if where else ''}{message}", file=sys.stderr)
        return 2
    await publisher.rate(rate)
    await pricing.catch_up()
    _print({"set": rate.model_dump(mode="json")})
    return 0


async def _list_rates(args: argparse.Namespace, pricing: ReplayedPriceBook, publisher: PricePublisher) -> int:
    _print(
        {
            "workspace_id": args.workspace_id,
            "rates": [r.model_dump(mode="json") for r in pricing.book.rates(args.workspace_id)],
        }
    )
    return 0


async def _delete_rate(args: argparse.Namespace, pricing: ReplayedPriceBook, publisher: PricePublisher) -> int:
    if pricing.book.rate(args.workspace_id, args.rate_id) is None:
        print(f"spendstream: workspace {args.workspace_id} has no rate {args.rate_id}", file=sys.stderr)
        return 2
    await publisher.delete_rate(args.workspace_id, args.rate_id)
    await pricing.catch_up()
    _print({"deleted": args.rate_id})
    return 0


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


async def _book() -> PriceBook:
    """The price book as the pricing topics hold it now (it stays usable once its replica stopped)."""
    async with _pricing() as (pricing, _):
        return pricing.book


def _recompute_direct(args: argparse.Namespace, shown: _Shown) -> dict[str, Any] | None:
    settings = RollupSettings()
    url = settings.resolved_clickhouse_url()
    client = clickhouse_client(url)
    try:
        migrate(client, settings.clickhouse_database, settings.retention_months)
        repricer = Repricer(client, settings.clickhouse_database)
        request = Request(args.start, args.end, args.workspace, f"cli:{getpass.getuser()}")
        pricing = BookPricing(asyncio.run(_book()))
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
