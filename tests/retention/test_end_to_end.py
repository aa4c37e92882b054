"""Erasure end to end: events streamed through ingest, a deletion request, and proof that nothing is left."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from spendstream.common.envelope import UnreadableRecord, read_record
from spendstream.common.erasure import OWNERS, DeletionCommand, DeletionRequest, Receipt
from spendstream.common.redis_keys import tenant_pattern
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import (
    ALL_TOPICS,
    API_KEYS,
    AUDIT,
    DATA_KEYS,
    DELETION_COMMANDS,
    DELETION_REQUESTS,
    USAGE_EVENTS,
    WORKSPACES,
)
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.settings import RollupSettings
from tests.retention.conftest import PROVIDER_ADMIN_KEY, product, stored
from tests.retention.pipeline import figures, publish, raw_count, replay, rows_of_table_with
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def _events(n: int, cost: float, customers: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        usage_event(cost_usd=cost, tags={"feature": "chat", "customer_id": customers[i % len(customers)]})
        for i in range(n)
    ]


async def _redis_keys(iso: Isolation, workspace_id: str, lasting: bool = False) -> list[bytes]:
    """The tenant's Redis keys; `lasting`: only those that cannot expire by themselves within a minute (the
    rate limiter's bucket lives a few seconds, so on a slow run it may be gone for reasons of its own)."""
    redis = aioredis.Redis.from_url(iso.stack.redis)
    try:
        keys = [bytes(k) async for k in redis.scan_iter(match=tenant_pattern(iso.prefix, workspace_id), count=1000)]
        if lasting:
            keys = [k for k in keys if (ttl := await redis.ttl(k)) == -1 or ttl > 60]
        return keys
    finally:
        await redis.aclose()


def _latest(records: list[tuple[bytes | None, bytes | None]]) -> dict[bytes, bytes | None]:
    latest: dict[bytes, bytes | None] = {}
    for key, value in records:
        if key is not None:
            latest[key] = value
    return latest


async def test_erased_workspace_leaves_nothing_readable_and_the_other_is_exact_to_the_cent(iso: Isolation) -> None:
    gone, kept = await create_workspace(iso, "gone"), await create_workspace(iso, "kept")
    a, b = gone["workspace_id"], kept["workspace_id"]
    # Customer ids long enough to search for: a two-character one turns up by chance in the receipt's hex ids.
    gone_events = _events(7, 0.37, ("cust-gone-1", "cust-gone-2"))
    gone_ids = [e["event_id"] for e in gone_events]
    async with product(iso) as p:
        await p.stream(gone["ingest"], gone_events)
        await p.stream(kept["ingest"], _events(5, 1.13, ("c1", "c9")))
        await stored(iso, a, 7)
        await stored(iso, b, 5)
        assert await _redis_keys(iso, a)  # ingest's dedupe ids and alerts' counters exist before

        async def rolled_up() -> dict[str, Any] | None:  # the daily rollup follows the raw rows by a periodic step
            found = figures(iso, b)
            return found if len(found["daily"]) == 2 else None

        kept_figures = await eventually(rolled_up, timeout=30)
        kept_usage = (await p.client.get("/v1/usage", headers=auth(kept["read"]))).json()
        kept_redis = await _redis_keys(iso, b, lasting=True)
        # A provider connector each: the erased workspace's sealed admin key goes, the other's stays.
        for w in (gone, kept):
            body = {"provider": "openai", "admin_key": PROVIDER_ADMIN_KEY}
            created = await p.client.post("/v1/connectors", json=body, headers=auth(w["admin"]))
            assert created.status_code == 201, created.text

        asked = await p.client.post("/v1/deletions", json={"request_id": "erase-gone"}, headers=auth(gone["admin"]))
        assert asked.status_code == 202, asked.text
        assert asked.json()["state"] == "requested" and asked.json()["subject"] == "workspace"
        done = await p.settled(a, "erase-gone")
        assert done.state == "verified", done.reason
        # The workspace's keys went with it: its admin key no longer opens anything, the status included.
        assert (await p.client.get("/v1/deletions/erase-gone", headers=auth(gone["admin"]))).status_code == 401

        # ClickHouse: every table, masked rows included.
        for table in rows_of_table_with(iso, "workspace_id"):
            assert raw_count(iso, table, "workspace_id = {ws:String}", {"ws": a}) == 0, table
        # Redis: every key of the tenant, whichever service wrote it.
        assert await _redis_keys(iso, a) == []
        # The other workspace: the same figures, the same keys.
        assert figures(iso, b) == kept_figures
        assert kept_figures["raw"] == [("c1", "3", "3.39", "3000", "600"), ("c9", "2", "2.26", "2000", "400")]
        assert (await p.client.get("/v1/usage", headers=auth(kept["read"]))).json() == kept_usage
        # (alerts may add keys of its own meanwhile; none of the other workspace's may go)
        assert set(kept_redis) <= set(await _redis_keys(iso, b))

        # The receipt: on the audit topic, the same as the request's, no personal data, every owner verified.
        receipts = _latest(await replay(iso, AUDIT))
        receipt = Receipt.model_validate_json(receipts[f"{a}/erase-gone".encode()] or b"")
        assert receipt == done.receipt
        assert receipt.status == "verified" and receipt.requested_by.startswith("key_")
        assert [o.owner for o in receipt.owners] == list(OWNERS)
        assert all(o.status == "done" and o.verifications for o in receipt.owners)
        assert all(v.result == 0 for o in receipt.owners for v in o.verifications)
        counts = {c.store: (c.before, c.after) for o in receipt.owners for c in o.counts}
        assert counts["clickhouse:usage_events"] == (7, 0)
        assert counts["kafka:connectors.config.v1"] == (1, 0)  # the sealed provider admin key
        # ... and retention read the connectors' compacted topics too before it said verified.
        assert receipt.compaction is not None and receipt.compaction.records_left == 0
        assert f"{iso.prefix}connectors.config.v1" in receipt.compaction.topics
        kept_connectors = (await p.client.get("/v1/connectors", headers=auth(kept["admin"]))).json()["connectors"]
        assert len(kept_connectors) == 1
        assert receipt.rows_after == 0 and receipt.rows_before >= 7
        text = receipts[f"{a}/erase-gone".encode()] or b""
        assert gone["admin"].encode() not in text and b"cust-gone" not in text

        # Replaying the request (a compliance tool writing it again) is a no-op with the same receipt.
        commands = len(
            [
                v
                for _, v in await replay(iso, DELETION_COMMANDS)
                if DeletionCommand.model_validate_json(v or b"").request_id == "erase-gone"
            ]
        )
        again = DeletionRequest(
            request_id="erase-gone", workspace_id=a, requested_by="tool", requested_at=datetime.now(UTC)
        )
        await publish(iso, DELETION_REQUESTS, again.key, again.model_dump_json().encode())

        async def restored() -> DeletionRequest | None:
            latest = _latest(await replay(iso, DELETION_REQUESTS)).get(again.key.encode())
            record = DeletionRequest.model_validate_json(latest or b"")
            return record if record.revision > done.revision else None

        record = await eventually(restored)
        assert record.state == "verified" and record.receipt == done.receipt and record.customer_id is None
        assert p.retention.coordinator.get(a, "erase-gone") == record
        assert (
            len(
                [
                    v
                    for _, v in await replay(iso, DELETION_COMMANDS)
                    if DeletionCommand.model_validate_json(v or b"").request_id == "erase-gone"
                ]
            )
            == commands
        )

    # Kafka: whatever is left of the tenant is unreadable. A reader replaying usage.events.v1 from offset 0
    # cannot decrypt one of its envelopes; the other workspace's all open.
    keyring = KeyRing(iso.settings(BaseServiceSettings))
    await keyring.table.start()
    try:
        opened: dict[str, int] = {}
        refused: dict[str, int] = {}
        for _, value in await replay(iso, USAGE_EVENTS):
            try:
                envelope, events, _ = await read_record(value, keyring)
            except UnreadableRecord as exc:
                assert exc.reason == "no_data_key"
                refused[exc.workspace_id or ""] = refused.get(exc.workspace_id or "", 0) + 1
                continue
            opened[envelope.workspace_id] = opened.get(envelope.workspace_id, 0) + len(events)
        assert opened == {b: 5} and refused == {a: 1}
    finally:
        await keyring.table.stop()
    # The control plane keeps no live key, data key or name of it.
    for topic in (API_KEYS, DATA_KEYS):
        live = [v for v in _latest(await replay(iso, topic)).values() if v is not None and a.encode() in v]
        assert live == [], topic.name
    marker = json.loads(_latest(await replay(iso, WORKSPACES))[a.encode()] or b"")
    assert marker["status"] == "deleted" and marker["name"] == ""
    # No record of any topic holds one of its events in clear (the 32-hex event ids would show).
    for topic in ALL_TOPICS:
        for _, value in await replay(iso, topic):
            assert not any(event_id.encode() in (value or b"") for event_id in gone_ids), topic.name

    # And a brand-new consumer replaying from offset 0 skips its records cleanly, storing only the other's.
    replay_db = f"{iso.database}_replay"
    async with serving(
        [create_rollup(iso.settings(RollupSettings, group_id="replay-from-zero", clickhouse_database=replay_db))]
    ):
        client = clickhouse_client(iso.stack.clickhouse)

        async def replayed() -> list[Any] | None:
            rows = list(
                client.query(
                    f"SELECT workspace_id, count(), sum(cost_usd) FROM {replay_db}.usage_events GROUP BY workspace_id"
                ).result_rows
            )
            return rows if rows and rows[0][1] == 5 else None

        rows = await eventually(replayed, timeout=30)
    assert [(ws, n, str(cost)) for ws, n, cost in rows] == [(b, 5, "5.650000000")]


async def test_customer_erasure_removes_that_customer_only_and_the_rest_stays_exact(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with product(iso) as p:
        await p.stream(
            ws["ingest"],
            [
                usage_event(cost_usd=0.5, tags={"feature": "chat", "customer_id": "cust-a"}),
                usage_event(cost_usd=0.25, tags={"feature": "chat", "customer_id": "cust-b"}),
                usage_event(cost_usd=1.0, tags={"feature": "search", "customer_id": "cust-a"}),
                usage_event(cost_usd=2.125, tags={"feature": "search", "customer_id": "cust-c"}),
            ],
        )
        await stored(iso, ws["workspace_id"], 4)

        asked = await p.client.post("/v1/deletions", json={"customer_id": "cust-a"}, headers=auth(ws["admin"]))
        assert asked.status_code == 202, asked.text
        request_id = asked.json()["request_id"]
        assert asked.json()["subject"] == "customer" and "cust-a" not in asked.text
        done = await p.settled(ws["workspace_id"], request_id)
        assert done.state == "verified", done.reason

        status = await p.client.get(f"/v1/deletions/{request_id}", headers=auth(ws["admin"]))
        assert status.status_code == 200 and status.json()["state"] == "verified"
        assert "cust-a" not in status.text and status.json()["customer_hash"].startswith("hmac-sha256:")
        # Asking again with the same id: nothing runs again, the answer carries the same receipt.
        commands = len(await replay(iso, DELETION_COMMANDS))
        repeated = await p.client.post(
            "/v1/deletions", json={"customer_id": "cust-a", "request_id": request_id}, headers=auth(ws["admin"])
        )
        assert repeated.status_code == 200 and repeated.json() == status.json()
        assert repeated.json()["receipt"]["status"] == "verified"
        assert len(await replay(iso, DELETION_COMMANDS)) == commands
        usage = (
            await p.client.get("/v1/usage", params={"group_by": "customer_id,feature"}, headers=auth(ws["read"]))
        ).json()

    for table in rows_of_table_with(iso, "customer_id"):
        assert raw_count(iso, table, "customer_id = {c:String}", {"c": "cust-a"}) == 0, table
    today = datetime.now(UTC).date().isoformat()
    assert figures(iso, ws["workspace_id"]) == {
        "raw": [("cust-b", "1", "0.25", "1000", "200"), ("cust-c", "1", "2.125", "1000", "200")],
        "daily": [(today, "cust-b", "chat", "1", "0.25", "1000"), (today, "cust-c", "search", "1", "2.125", "1000")],
    }
    assert usage["totals"]["requests"] == 2 and usage["totals"]["cost_usd"] == "2.375000000"
    assert [(r["customer_id"], r["feature"], r["cost_usd"]) for r in usage["rows"]] == [
        ("cust-b", "chat", "0.250000000"),
        ("cust-c", "search", "2.125000000"),
    ]
    # The permanent records name the customer only by its keyed hash.
    for topic in (AUDIT, DELETION_REQUESTS):
        latest = _latest(await replay(iso, topic))[f"{ws['workspace_id']}/{request_id}".encode()] or b""
        assert b"cust-a" not in latest and done.customer_hash is not None
        assert done.customer_hash.encode() in latest


async def test_a_request_id_another_workspace_used_erases_this_workspace_and_both_receipts_stay(
    iso: Isolation,
) -> None:
    first, second = await create_workspace(iso, "first"), await create_workspace(iso, "second")
    a, b = first["workspace_id"], second["workspace_id"]
    body = {"customer_id": "cust-shared", "request_id": "shared-1"}
    async with product(iso) as p:
        await p.stream(first["ingest"], _events(2, 0.5, ("cust-shared",)))
        await p.stream(second["ingest"], _events(3, 0.5, ("cust-shared", "cust-stays")))
        await stored(iso, a, 2)
        await stored(iso, b, 3)

        assert (await p.client.post("/v1/deletions", json=body, headers=auth(first["admin"]))).status_code == 202
        done_a = await p.settled(a, "shared-1")
        assert done_a.state == "verified", done_a.reason
        reused = await p.client.post("/v1/deletions", json=body, headers=auth(second["admin"]))
        assert reused.status_code == 202, reused.text
        done_b = await p.settled(b, "shared-1")
        assert done_b.state == "verified", done_b.reason
        # Each owner erased the second workspace's rows too (none took the first's erasure for it).
        assert done_b.receipt is not None and done_b.receipt.workspace_id == b
        counts = {c.store: (c.before, c.after) for o in done_b.receipt.owners for c in o.counts}
        assert counts["clickhouse:usage_events"] == (2, 0)
        where = "workspace_id = {ws:String} AND customer_id = {c:String}"
        assert raw_count(iso, "usage_events", where, {"ws": b, "c": "cust-shared"}) == 0
        assert raw_count(iso, "usage_events", where, {"ws": b, "c": "cust-stays"}) == 1

        # Within a workspace the id stays idempotent: the same request and receipt again.
        for keys, done in ((first, done_a), (second, done_b)):
            again = await p.client.post("/v1/deletions", json=body, headers=auth(keys["admin"]))
            assert done.receipt is not None and again.status_code == 200
            assert again.json()["receipt"] == json.loads(done.receipt.model_dump_json())
            status = await p.client.get("/v1/deletions/shared-1", headers=auth(keys["admin"]))
            assert status.json()["workspace_id"] == keys["workspace_id"]

    # Both receipts stay on the compacted audit topic: one does not replace the other.
    receipts = [Receipt.model_validate_json(v) for v in _latest(await replay(iso, AUDIT)).values() if v is not None]
    assert sorted(r.workspace_id for r in receipts if r.request_id == "shared-1") == sorted([a, b])
