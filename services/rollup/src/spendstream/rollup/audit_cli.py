"""`spendstream audit verify WORKSPACE`: asks rollup (which owns ClickHouse) to verify a workspace's audit chain.

With the operator's internal token (SPENDSTREAM_INTERNAL_TOKEN) any workspace; with an admin key, the key's own.
Prints the verdict as JSON; exits 0 when the chain verifies, 1 naming the first bad record, 2 when it could not ask.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="the audit log")
    actions = audit.add_subparsers(dest="action", required=True)
    verify = actions.add_parser("verify", help="verify a workspace's audit chain; non-zero naming the first bad record")
    verify.add_argument("workspace_id")
    verify.add_argument(
        "--url",
        default=os.environ.get("SPENDSTREAM_URL", "http://127.0.0.1:8080"),
        help="rollup's (or `spendstream up`'s) base URL (env SPENDSTREAM_URL)",
    )
    verify.add_argument(
        "--internal-token",
        default=os.environ.get("SPENDSTREAM_INTERNAL_TOKEN", ""),
        help="the operator token (env SPENDSTREAM_INTERNAL_TOKEN): any workspace",
    )
    verify.add_argument(
        "--key",
        default=os.environ.get("SPENDSTREAM_API_KEY", ""),
        help="an admin key of WORKSPACE (env SPENDSTREAM_API_KEY)",
    )
    verify.set_defaults(handler=verify_chain)


def verify_chain(args: argparse.Namespace) -> int:
    root = args.url.rstrip("/")
    if args.internal_token:
        query = urllib.parse.urlencode({"workspace_id": args.workspace_id})
        url, headers = f"{root}/internal/v1/audit/verify?{query}", {"X-Internal-Token": args.internal_token}
    elif args.key:
        url, headers = f"{root}/v1/audit/verify", {"Authorization": f"Bearer {args.key}"}
    else:
        print("spendstream: audit verify needs the internal token or an admin key (--key)", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=600) as response:  # noqa: S310 (the operator's own URL)
            verdict: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        print(
            f"spendstream: audit verify refused: HTTP {exc.code} {exc.read()[:500].decode(errors='replace')}",
            file=sys.stderr,
        )
        return 2
    except urllib.error.URLError as exc:
        print(f"spendstream: rollup did not answer at {root}: {exc.reason}", file=sys.stderr)
        return 2
    print(json.dumps(verdict, sort_keys=True))
    bad = verdict.get("first_bad")
    if verdict.get("ok") and bad is None:
        return 0
    if isinstance(bad, dict):
        print(
            f"spendstream: the audit chain of {args.workspace_id} is broken at record seq {bad.get('seq')}: "
            f"{bad.get('reason')}",
            file=sys.stderr,
        )
    return 1
