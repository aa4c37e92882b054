"""Erasure: one workspace among 10 million stored events, from the deletion request to its verified receipt.

ClickHouse (rollup's chDB directory) is pre-filled with synthetic rows spread over 100 workspaces by
INSERT ... SELECT FROM numbers() (bench.chtasks); then every owner of the saga (ingest, rollup, alerts, connectors,
people) and retention run as their own processes and the workspace's admin key asks `POST /v1/deletions`; the
clock stops when `GET /v1/deletions/{id}` says `verified` (every owner deleted, verified and reported; the
receipt is written).
The limit: the bare synchronous ALTER TABLE ... DELETE of another workspace of the same size on both tables.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from bench.harness import Bench, ServiceProcess, free_port, python_json, start_all
from bench.stats import Spread
from spendstream.common.erasure import OWNERS, request_key
from spendstream.common.topics import AUDIT, topic_name

WORKSPACES = 100


@dataclasses.dataclass(frozen=True)
class ErasureFigures:
    seconds: Spread
    limit_seconds: Spread
    stored: int
    per_workspace: int
    prefill_seconds: float
    receipts: list[dict[str, Any]]


def _sizes(smoke: bool) -> dict[str, int]:
    return {"reps": 1, "rows": 100_000} if smoke else {"reps": 3, "rows": 10_000_000}


async def _erase(
    client: httpx.AsyncClient, url: str, admin: str, receipts: AIOKafkaConsumer, timeout: float
) -> tuple[float, dict[str, Any]]:
    """POST the request, then wait for its receipt on the audit topic.

    The receipt is read from `audit.receipts.v1` rather than `GET /v1/deletions/{id}`: a whole-workspace erasure
    revokes the very admin key that asked, so the HTTP status answers 401 once it is done.
    """
    started = time.perf_counter()
    response = await client.post(f"{url}/v1/deletions", json={}, headers={"authorization": f"Bearer {admin}"})
    response.raise_for_status()
    asked = response.json()
    key = request_key(asked["workspace_id"], asked["request_id"]).encode()
    while time.perf_counter() - started < timeout:
        for records in (await receipts.getmany(timeout_ms=50)).values():
            for record in records:
                if record.key == key and record.value:
                    receipt: dict[str, Any] = orjson.loads(record.value)
                    if receipt["status"] != "verified":
                        raise RuntimeError(f"erasure failed: {receipt.get('reason')}")
                    return time.perf_counter() - started, receipt
    raise RuntimeError(f"erasure not verified within {timeout}s")


async def measure(bench: Bench) -> ErasureFigures:
    sizes = _sizes(bench.smoke)
    reps = sizes["reps"]
    ns = await bench.namespace("erasure", workspaces=2 * reps + 1)
    # The first erasure is a warm-up (consumer groups joining, first queries planned): not counted.
    warmup, ours, bare = ns.workspaces[0], ns.workspaces[1 : reps + 1], ns.workspaces[reps + 1 :]
    ids = [w.workspace_id for w in ns.workspaces]
    ids += [f"ws_synthetic_{i}" for i in range(WORKSPACES - len(ids))]
    chdb = bench.workdir / "ch-erasure"
    config = {"path": str(chdb), "db": "spendstream"}
    prefill = await python_json(
        "bench.chtasks", {**config, "task": "prefill", "rows": sizes["rows"], "workspaces": ids}, timeout=1800
    )
    # Every owner of the saga runs: retention waits for all of them (SPENDSTREAM_ERASURE_OWNERS' default).
    port = {name: free_port() for name in (*OWNERS, "retention")}
    extra = {
        "rollup": {"SPENDSTREAM_CLICKHOUSE_URL": f"chdb://{chdb}", "SPENDSTREAM_CLICKHOUSE_DATABASE": "spendstream"},
        "alerts": {"SPENDSTREAM_ROLLUP_URL": f"http://127.0.0.1:{port['rollup']}"},
    }
    services = [
        ServiceProcess(
            name,
            bench.env(ns.prefix, port[name], **extra.get(name, {})),
            bench.workdir / "logs" / f"erasure-{name}.log",
        )
        for name in port
    ]
    # A smoke erasure takes seconds; one that has not finished within two minutes never will (a missing owner).
    wait = 120.0 if bench.smoke else 600.0
    seconds, receipts = [], []
    try:
        await start_all(*services)
        retention = services[-1]
        audit = AIOKafkaConsumer(
            topic_name(AUDIT, ns.prefix),
            bootstrap_servers=bench.kafka,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await audit.start()
        try:
            async with httpx.AsyncClient(timeout=30.0) as client:
                if not bench.smoke:
                    await _erase(client, retention.url, warmup.admin, audit, wait)
                for ws in ours:
                    took, receipt = await _erase(client, retention.url, ws.admin, audit, wait)
                    seconds.append(took)
                    receipts.append(
                        {
                            **{
                                k: receipt[k]
                                for k in ("rows_before", "rows_after", "status", "requested_at", "completed_at")
                            },
                            "owners": {o["owner"]: o["finished_at"] for o in receipt["owners"]},
                        }
                    )
        finally:
            await audit.stop()
    finally:
        for svc in reversed(services):
            await svc.stop()
    done = await python_json(
        "bench.chtasks",
        {
            **config,
            "task": "finish",
            "delete": [w.workspace_id for w in bare],
            "erased": [w.workspace_id for w in ours],
        },
    )
    if any(done["left"].values()):
        raise RuntimeError(f"rows left after a verified erasure: {done['left']}")
    limits = done["deletions"]
    return ErasureFigures(
        Spread.of(seconds),
        Spread.of([r["seconds"] for r in limits]),
        prefill["rows"],
        sizes["rows"] // WORKSPACES,
        prefill["seconds"],
        receipts,
    )
