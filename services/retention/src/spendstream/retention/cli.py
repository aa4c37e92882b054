"""retention's subcommands of the `spendstream` CLI, for compliance staff and operators.

  spendstream deletion request --workspace WS [--customer-id ID] [--request-id ID] [--wait SECONDS]
  spendstream deletion status REQUEST_ID [--workspace WS]
  spendstream deletion subject-hash --workspace WS --customer-id ID
  spendstream deletion schedules              workspaces due for deletion after a cancellation, and when
  spendstream retention check                 live topic retention configs against the registry and policy

(Cancelling and reactivating a workspace is `spendstream tenant cancel|reactivate`, ingest's.)

A request is written to `retention.requests.v1`, the same path any compliance tool may use; the running
retention service carries it out. Status is read by replaying that compacted topic, so it works after the
workspace's keys are gone. Request ids are per workspace: `status` without `--workspace` shows the request
when one workspace has that id, and lists the workspaces (exit 1) when several do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from spendstream.common.erasure import DeletionRequest
from spendstream.common.kafka import CompactedTable, Publisher, make_broker
from spendstream.common.topics import DELETION_REQUESTS
from spendstream.retention.receipts import subject_hash
from spendstream.retention.requests import RequestView, new_request_id
from spendstream.retention.schedules import Schedules
from spendstream.retention.settings import RetentionSettings
from spendstream.retention.windows import check_topics


def register(subparsers: Any) -> None:
    deletion = subparsers.add_parser("deletion", help="erasure requests and their receipts")
    actions = deletion.add_subparsers(dest="action", required=True)

    request = actions.add_parser("request", help="erase a workspace, or one customer_id inside it")
    request.add_argument("--workspace", required=True)
    request.add_argument("--customer-id", default=None)
    request.add_argument("--request-id", default=None, help="idempotency key (default: a new id)")
    request.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for verified/failed and print the receipt",
    )
    request.set_defaults(handler=_request)

    status = actions.add_parser("status", help="state and receipt of a deletion request")
    status.add_argument("request_id")
    status.add_argument("--workspace", default=None, help="the workspace whose request this is")
    status.set_defaults(handler=_status)

    digest = actions.add_parser("subject-hash", help="the keyed hash a receipt names a customer by")
    digest.add_argument("--workspace", required=True)
    digest.add_argument("--customer-id", required=True)
    digest.set_defaults(handler=_subject_hash)

    schedules = actions.add_parser("schedules", help="workspaces scheduled for deletion, from the lifecycle")
    schedules.set_defaults(handler=_schedules)

    retention = subparsers.add_parser("retention", help="retention windows").add_subparsers(
        dest="action", required=True
    )
    check = retention.add_parser("check", help="compare live topic retention with the registry; exit 1 on drift")
    check.set_defaults(handler=_check)


def _print(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


async def _find(settings: RetentionSettings, request_id: str, workspace_id: str | None) -> list[DeletionRequest]:
    """The requests with this id, one per workspace (only `workspace_id`'s if given), by workspace id."""
    table: CompactedTable[DeletionRequest] = CompactedTable(settings, DELETION_REQUESTS)
    await table.start()
    try:
        values = table.values()
    finally:
        await table.stop()
    # By value, not by topic key: a record still under its bare request id belongs to the workspace it names.
    found: dict[str, DeletionRequest] = {}
    for value in values:
        if value.request_id == request_id and workspace_id in (None, value.workspace_id):
            if value.key not in found or value.revision > found[value.key].revision:
                found[value.key] = value
    return sorted(found.values(), key=lambda r: r.workspace_id)


async def _read(settings: RetentionSettings, workspace_id: str, request_id: str) -> DeletionRequest | None:
    found = await _find(settings, request_id, workspace_id)
    return found[0] if found else None


async def _publish(settings: RetentionSettings, request: DeletionRequest) -> None:
    broker = make_broker(settings, "cli")
    await broker.connect()
    try:
        await Publisher(broker, DELETION_REQUESTS, settings.topic_prefix).publish(request, request.key)
    finally:
        await broker.stop()


async def _submit(args: argparse.Namespace) -> int:
    settings = RetentionSettings()
    request_id = args.request_id or new_request_id()
    existing = await _read(settings, args.workspace, request_id)
    if existing is None:
        request = DeletionRequest(
            request_id=request_id,
            workspace_id=args.workspace,
            customer_id=args.customer_id,
            origin="cli",
            requested_by="cli",
            requested_at=datetime.now(UTC),
        )
        await _publish(settings, request)
        current: DeletionRequest | None = request
    else:
        current = existing  # a replayed request id: nothing new is asked, the known state is shown
    deadline = asyncio.get_running_loop().time() + args.wait
    while args.wait and current is not None and not current.terminal:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
        current = await _read(settings, args.workspace, request_id) or current
    assert current is not None
    _print(RequestView.of(current).model_dump(mode="json"))
    return 1 if current.state == "failed" or (args.wait and not current.terminal) else 0


def _request(args: argparse.Namespace) -> int:
    return asyncio.run(_submit(args))


def _status(args: argparse.Namespace) -> int:
    found = asyncio.run(_find(RetentionSettings(), args.request_id, args.workspace))
    if not found:
        _print({"error": "not_found", "request_id": args.request_id})
        return 1
    if len(found) > 1:
        _print(
            {
                "error": "ambiguous",
                "request_id": args.request_id,
                "workspaces": [r.workspace_id for r in found],
                "message": "several workspaces use this request id; pass --workspace",
            }
        )
        return 1
    _print(RequestView.of(found[0]).model_dump(mode="json"))
    return 0


def _subject_hash(args: argparse.Namespace) -> int:
    settings = RetentionSettings()
    _print(
        {
            "workspace_id": args.workspace,
            "customer_hash": subject_hash(settings.kek_bytes(), args.workspace, args.customer_id),
            "subject_key_id": settings.kek_identity(),
        }
    )
    return 0


def _schedules(_: argparse.Namespace) -> int:
    async def read() -> list[dict[str, str]]:
        schedules = Schedules(RetentionSettings())
        await schedules.table.start()
        try:
            return [
                {
                    "workspace_id": s.workspace_id,
                    "due_at": s.due_at.isoformat(),
                    "cause": s.cause,
                    "request_id": s.request_id,
                }
                for s in sorted(schedules.all(), key=lambda s: s.due_at)
            ]
        finally:
            await schedules.table.stop()

    _print(asyncio.run(read()))
    return 0


def _check(_: argparse.Namespace) -> int:
    problems = asyncio.run(check_topics(RetentionSettings()))
    _print({"ok": not problems, "problems": problems})
    return 1 if problems else 0
