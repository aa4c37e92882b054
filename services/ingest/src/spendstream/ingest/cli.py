"""ingest's subcommands of `spendstream` (registered by the CLI through `register`).

spendstream keys list WORKSPACE_ID
spendstream keys issue WORKSPACE_ID --scope ingest|read|admin     prints the new key once
spendstream keys revoke WORKSPACE_ID KEY_ID
spendstream tenant show|cancel|reactivate|rotate-data-key WORKSPACE_ID
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from spendstream.common.kafka import make_broker
from spendstream.common.kek_check import kek_problems
from spendstream.common.settings import ConfigurationError
from spendstream.common.tenants import KeyDirectory, KeyRing
from spendstream.ingest.admin import Admin, AdminError
from spendstream.ingest.settings import IngestSettings
from spendstream.ingest.workspaces import ControlPlane, WorkspaceDirectory

Action = Callable[[Admin, argparse.Namespace], Awaitable[Any]]


async def _with_admin(action: Action, args: argparse.Namespace) -> Any:
    settings = IngestSettings()
    # Before KeyRing reads (or generates) the KEK: another KEK would wrap rotated keys the server cannot unwrap.
    if problems := await kek_problems(settings):
        raise ConfigurationError("\n".join(problems))
    broker = make_broker(settings, "cli")
    keys, keyring, workspaces = KeyDirectory(settings), KeyRing(settings), WorkspaceDirectory(settings)
    await broker.connect()
    tables = (keys.table, keyring.table, workspaces.table)
    try:
        for table in tables:
            await table.start()
        interval = timedelta(seconds=settings.data_key_rotation_interval_seconds)
        admin = Admin(ControlPlane(settings, broker), keys, keyring, workspaces, rotation_interval=interval)
        return await action(admin, args)
    finally:
        for table in tables:
            await table.stop()
        await broker.stop()


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _handler(action: Action) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            result = asyncio.run(_with_admin(action, args))
        except AdminError as exc:
            print(f"spendstream: {exc.message} ({exc.code})", file=sys.stderr)
            return 1
        print(json.dumps(_jsonable(result), indent=2))
        return 0

    return run


async def _list(admin: Admin, args: argparse.Namespace) -> Any:
    return admin.list_keys(args.workspace_id)


async def _issue(admin: Admin, args: argparse.Namespace) -> Any:
    issued = await admin.issue_key(args.workspace_id, args.scope)
    return {
        "key": issued.key,
        "key_id": issued.key_id,
        "scope": issued.scope,
        "note": "the key is shown once and stored only as a SHA-256 hash",
    }


async def _revoke(admin: Admin, args: argparse.Namespace) -> Any:
    return await admin.revoke_key(args.workspace_id, args.key_id)


async def _show(admin: Admin, args: argparse.Namespace) -> Any:
    return admin.workspace(args.workspace_id)


async def _cancel(admin: Admin, args: argparse.Namespace) -> Any:
    return await admin.cancel(args.workspace_id)


async def _reactivate(admin: Admin, args: argparse.Namespace) -> Any:
    return await admin.reactivate(args.workspace_id)


async def _rotate(admin: Admin, args: argparse.Namespace) -> Any:
    return {"workspace_id": args.workspace_id, "current_version": await admin.rotate_data_key(args.workspace_id)}


def register(subparsers: Any) -> None:
    """Add `keys` and `tenant` to the `spendstream` command."""
    keys = subparsers.add_parser("keys", help="API keys of a workspace").add_subparsers(dest="action", required=True)
    listing = keys.add_parser("list", help="list a workspace's keys (ids and scopes, never the keys)")
    listing.add_argument("workspace_id")
    listing.set_defaults(handler=_handler(_list))
    issue = keys.add_parser("issue", help="issue a key and print it once")
    issue.add_argument("workspace_id")
    issue.add_argument("--scope", choices=("ingest", "read", "admin"), default="ingest")
    issue.set_defaults(handler=_handler(_issue))
    revoke = keys.add_parser("revoke", help="revoke a key on every replica")
    revoke.add_argument("workspace_id")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_handler(_revoke))

    tenant = subparsers.add_parser("tenant", help="workspace lifecycle and data key").add_subparsers(
        dest="action", required=True
    )
    for name, action, text in (
        ("show", _show, "print the workspace's plan, status and data-key version"),
        ("cancel", _cancel, "cancel the workspace (deleted 30 days later unless reactivated)"),
        ("reactivate", _reactivate, "reactivate a cancelled workspace"),
        (
            "rotate-data-key",
            _rotate,
            "add a new data-key version; older versions still decrypt (one rotation per workspace per "
            "SPENDSTREAM_DATA_KEY_ROTATION_INTERVAL_SECONDS, default an hour)",
        ),
    ):
        parser = tenant.add_parser(name, help=text)
        parser.add_argument("workspace_id")
        parser.set_defaults(handler=_handler(action))
