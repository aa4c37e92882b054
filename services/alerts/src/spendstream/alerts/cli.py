"""`spendstream budgets ...`: budget CRUD against a running alerts service's HTTP API (an admin key).

  spendstream budgets create --name NAME --amount USD [--feature F | --customer C] [--threshold PCT ...]
                             [--webhook URL ...] [--email ADDRESS ...] [--no-forecast] [--spike-multiple X]
                             [--hard [--on-redis-unavailable deny|allow]]
  spendstream budgets list | show ID | alerts ID | delete ID
  spendstream budgets update ID [--amount USD] [--name NAME] [--threshold PCT ...] [--email ...] [--webhook ...]
                                [--hard | --soft] [--on-redis-unavailable deny|allow]

`--url` (or SPENDSTREAM_ALERTS_URL, default http://127.0.0.1:8083) and `--key` (or SPENDSTREAM_ADMIN_KEY).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> int:
    try:
        with _client(args) as client:
            return _answer(client.request(method, path, json=body))
    except httpx.HTTPError as exc:
        raise RuntimeError(f"cannot reach alerts at {args.url} ({type(exc).__name__})") from None


def _client(args: argparse.Namespace) -> httpx.Client:
    key = args.key or os.environ.get("SPENDSTREAM_ADMIN_KEY", "")
    if not key:
        raise ValueError("an admin key is needed: --key or SPENDSTREAM_ADMIN_KEY")
    return httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {key}"}, timeout=30.0)


def _answer(response: httpx.Response) -> int:
    if response.status_code == 204:
        print(json.dumps({"deleted": True}))
        return 0
    try:
        body: Any = response.json()
    except ValueError:
        body = {"status": response.status_code}
    print(json.dumps(body, indent=2), file=sys.stdout if response.is_success else sys.stderr)
    return 0 if response.is_success else 1


def _channels(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.webhook is not None:
        body["webhooks"] = [{"url": url} for url in args.webhook]
    if args.email is not None:
        body["emails"] = args.email
    if args.threshold is not None:
        body["thresholds"] = args.threshold
    return body


def _create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "amount_usd": args.amount,
        "forecast": not args.no_forecast,
        **_channels(args),
    }
    if args.feature and args.customer:
        raise ValueError("a budget is scoped to one tag: --feature or --customer, not both")
    if args.feature:
        body["scope"] = {"tag": "feature", "value": args.feature}
    if args.customer:
        body["scope"] = {"tag": "customer_id", "value": args.customer}
    if args.spike_multiple is not None:
        body["spike_multiple"] = args.spike_multiple
    if args.hard:
        body["hard"] = True
    if args.on_redis_unavailable is not None:
        body["on_redis_unavailable"] = args.on_redis_unavailable
    return _call(args, "POST", "/v1/budgets", body)


def _update(args: argparse.Namespace) -> int:
    body = _channels(args)
    for name, value in (
        ("name", args.name),
        ("amount_usd", args.amount),
        ("hard", args.hard),
        ("on_redis_unavailable", args.on_redis_unavailable),
    ):
        if value is not None:
            body[name] = value
    return _call(args, "PATCH", f"/v1/budgets/{args.budget_id}", body)


def _list(args: argparse.Namespace) -> int:
    return _call(args, "GET", "/v1/budgets")


def _show(args: argparse.Namespace) -> int:
    return _call(args, "GET", f"/v1/budgets/{args.budget_id}")


def _alerts(args: argparse.Namespace) -> int:
    return _call(args, "GET", f"/v1/budgets/{args.budget_id}/alerts")


def _delete(args: argparse.Namespace) -> int:
    return _call(args, "DELETE", f"/v1/budgets/{args.budget_id}")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("SPENDSTREAM_ALERTS_URL", "http://127.0.0.1:8083"))
    parser.add_argument("--key", default=None, help="an admin key (default: SPENDSTREAM_ADMIN_KEY)")


def _channel_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=int, action="append", help="percent; repeat (default 75, 90, 100)")
    parser.add_argument("--webhook", action="append", help="URL; the signing secret is printed once")
    parser.add_argument("--email", action="append", help="address; repeat for several")


def _policy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--on-redis-unavailable",
        choices=("deny", "allow"),
        help="a hard budget's answer while Redis is unreachable (default deny: fail closed)",
    )


def register(subparsers: Any) -> None:
    """Add `budgets` to the spendstream command (see apps/cli: each parser sets `handler`)."""
    budgets = subparsers.add_parser("budgets", help="monthly budgets and their alerts").add_subparsers(
        dest="action", required=True
    )
    create = budgets.add_parser("create", help="create a budget")
    _common(create)
    _channel_options(create)
    create.add_argument("--name", required=True)
    create.add_argument("--amount", required=True, help="USD per UTC calendar month")
    create.add_argument("--feature", help="count only events tagged feature=VALUE")
    create.add_argument("--customer", help="count only events tagged customer_id=VALUE")
    create.add_argument("--no-forecast", action="store_true", help="no month-end projection alert")
    create.add_argument("--spike-multiple", help="spike when a day exceeds this multiple of the 7-day mean")
    create.add_argument("--hard", action="store_true", help="calls reserve first and are refused past the amount")
    _policy_option(create)
    create.set_defaults(handler=_create)

    update = budgets.add_parser("update", help="change a budget (raising it re-arms thresholds above spend)")
    _common(update)
    _channel_options(update)
    update.add_argument("budget_id")
    update.add_argument("--name")
    update.add_argument("--amount")
    hardness = update.add_mutually_exclusive_group()
    hardness.add_argument("--hard", dest="hard", action="store_const", const=True, help="make it a hard budget")
    hardness.add_argument("--soft", dest="hard", action="store_const", const=False, help="alerts only, no refusals")
    _policy_option(update)
    update.set_defaults(handler=_update)

    for name, handler, text in (
        ("show", _show, "one budget"),
        ("alerts", _alerts, "alerts and deliveries"),
        ("delete", _delete, "delete a budget"),
    ):
        parser = budgets.add_parser(name, help=text)
        _common(parser)
        parser.add_argument("budget_id")
        parser.set_defaults(handler=handler)
    listing = budgets.add_parser("list", help="the workspace's budgets")
    _common(listing)
    listing.set_defaults(handler=_list)
