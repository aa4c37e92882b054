"""Random bytes on every topic a service consumes, while all four services run: afterwards a valid record on
each of them is still processed, every consumer group commits past the garbage (no stuck partition), and
every service still answers (no crash loop). Garbage: hypothesis-generated values, keys and headers, os.urandom,
tombstones, non-UTF-8 keys and headers, deeply nested and truncated JSON, records near the size limit."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spendstream.common.topics import (
    ALERTS_FIRED,
    API_KEYS,
    BUDGETS,
    DATA_KEYS,
    DELETION_COMMANDS,
    DELETION_REPORTS,
    DELETION_REQUESTS,
    INGEST_RAW,
    INGEST_TALLIES,
    LIFECYCLE,
    ROLLUP_ALERTS,
    USAGE_EVENTS,
    WORKSPACES,
    AnyTopic,
    topic_name,
)
from tests.security.pipeline import lag, running
from tests.support import Isolation, auth, create_workspace, eventually, usage_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CONSUMED: tuple[AnyTopic, ...] = (
    USAGE_EVENTS,
    INGEST_RAW,
    DELETION_COMMANDS,
    DELETION_REPORTS,
    LIFECYCLE,
    DELETION_REQUESTS,
    BUDGETS,
    ALERTS_FIRED,
    WORKSPACES,
    API_KEYS,
    DATA_KEYS,
    INGEST_TALLIES,
    ROLLUP_ALERTS,
)
# (group suffix, topic): every consumer group of the four services.
GROUPS: tuple[tuple[str, AnyTopic], ...] = (
    ("spendstream-ingest-raw", INGEST_RAW),
    ("spendstream-ingest-erasure", DELETION_COMMANDS),
    ("spendstream-rollup", USAGE_EVENTS),
    ("spendstream-rollup-erasure", DELETION_COMMANDS),
    ("spendstream-alerts", USAGE_EVENTS),
    ("spendstream-alerts-delivery", ALERTS_FIRED),
    ("spendstream-rollup-tallies", INGEST_TALLIES),
    ("spendstream-alerts-delivery-data", ROLLUP_ALERTS),
    ("spendstream-alerts-erasure", DELETION_COMMANDS),
    ("spendstream-retention", DELETION_REPORTS),
)
Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def hypothesis_records(count: int) -> list[Record]:
    """Records drawn by hypothesis: any value, key (or none) and headers (any bytes, any header name)."""
    drawn: list[Record] = []

    @settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        value=st.one_of(st.none(), st.binary(max_size=4096)),
        key=st.one_of(st.none(), st.binary(max_size=80)),
        headers=st.lists(
            st.tuples(
                st.sampled_from(["x-api-key", "content-type", "traceparent", "correlation_id", "reply_to"])
                | st.text(min_size=1, max_size=12),
                st.binary(max_size=64),
            ),
            max_size=3,
        ),
    )
    def collect(value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        drawn.append((key, value, headers))

    collect()
    return drawn


def crafted_records() -> list[Record]:
    """Shapes a fuzzer rarely finds: non-UTF-8 keys and headers, almost-valid and hostile JSON."""
    deep = b"[" * 100_000
    return [
        (b"\xff\xfe\x00", b"{}", []),
        (b"k", b"{}", [("content-type", b"\xff\xfe"), ("x-api-key", b"\xc3\x28")]),
        (b"k", b"not json", [("content-type", b"application/json")]),
        # FastStream's RPC: a reply_to header would make the handler's result go to the topic it names.
        (b"k", b"{}", [("reply_to", b"spendstream-no-such-topic")]),
        (None, os.urandom(4096), [("content-type", b"application/json")]),
        (b"k", b"", []),
        (b"tombstone-of-nothing", None, []),
        (b"k", b"null", []),
        (b"k", b"[]", []),
        (b"k", b'"str"', []),
        (b"k", b"1e999999", []),
        (b"k", deep, []),
        (b"k", b'{"a":' * 50_000, []),
        (b"k", b'{"v": 1, "workspace_id": "ws_nobody", "events": "AAAA"}', []),
        (b"k", b'{"request_id": "r1", "scope": {"workspace_id": 7}}', []),
        (b"k", b'{"workspace_id": "ws_x", "kind": "deleted", "at": "not a date"}', []),
        (b"k", b'{"key_hash": null}', []),
        (b"k", os.urandom(900_000), []),
        (None, b'{"events": [' + b'{"provider": "openai"},' * 1000 + b"{}]}", [("x-api-key", b"ssk_ingest_nope")]),
    ]


async def flood(bootstrap: str, prefix: str, records: list[Record]) -> int:
    """Send every record to every consumed topic; returns how many the broker took (it refuses keyless
    records on compacted topics itself)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2 * 1024 * 1024)
    await producer.start()
    sent: list[asyncio.Future[Any]] = []
    try:
        for topic in CONSUMED:
            name = topic_name(topic, prefix)
            for key, value, headers in records:
                # Kafka itself refuses a record with neither key nor value.
                sent.append(
                    await producer.send(
                        name, value if value is not None or key is not None else b"", key=key, headers=headers
                    )
                )
            for _ in range(20):
                sent.append(
                    await producer.send(name, os.urandom(int.from_bytes(os.urandom(2)) % 8192), key=os.urandom(8))
                )
        outcomes = await asyncio.gather(*sent, return_exceptions=True)
    finally:
        await producer.stop()
    return sum(1 for outcome in outcomes if not isinstance(outcome, BaseException))


async def test_garbage_on_every_consumed_topic_then_valid_records_are_still_processed(iso: Isolation) -> None:
    before = await create_workspace(iso, "before")
    records = hypothesis_records(40) + crafted_records()
    async with running(iso) as p:
        taken = await flood(iso.stack.kafka, iso.prefix, records)
        assert taken >= len(CONSUMED) * 20

        # The control plane after the garbage: a new workspace authenticates on every service.
        # `cancelled` first: the key topic has one partition, so once ingest knows `after`'s keys it knows these.
        cancelled = await create_workspace(iso, "cancelled")
        after = await create_workspace(iso, "after")
        ids = {"http": uuid.uuid4().hex, "raw": uuid.uuid4().hex, "after": uuid.uuid4().hex}

        async def accepted(key: str, event_id: str) -> bool:
            r = await p.client.post("/v1/events", json={"events": [usage_event(event_id=event_id)]}, headers=auth(key))
            assert r.status_code in (202, 401), r.text  # 401 only while the new key replays
            return r.status_code == 202

        await eventually(lambda: accepted(before["ingest"], ids["http"]))
        await eventually(lambda: accepted(after["ingest"], ids["after"]))

        # The raw intake after the garbage.
        producer = AIOKafkaProducer(bootstrap_servers=iso.stack.kafka, acks="all")
        await producer.start()
        try:
            body = json.dumps({"events": [usage_event(event_id=ids["raw"])]}).encode()
            await producer.send_and_wait(
                topic_name(INGEST_RAW, iso.prefix), body, headers=[("x-api-key", before["ingest"].encode())]
            )
        finally:
            await producer.stop()

        async def stored(key: str, n: int) -> bool:
            r = await p.client.get("/v1/export", params={"format": "json"}, headers=auth(key))
            assert r.status_code in (200, 401), r.text  # 401 only while rollup's own key table replays the new key
            return r.status_code == 200 and len(r.json()["events"]) == n

        await eventually(lambda: stored(before["read"], 2), timeout=60)
        await eventually(lambda: stored(after["read"], 1), timeout=60)

        # ingest.tallies.v1 after the garbage: the new workspace's event is on its completeness ledger.
        async def tallied() -> bool:
            r = await p.client.get("/v1/completeness", headers=auth(after["read"]))
            assert r.status_code == 200, r.text
            return [(d["accepted"], d["stored_raw"]) for d in r.json()["days"]] == [(1, 1)]

        await eventually(tallied, timeout=60)

        # alerts.budgets.v1 after the garbage: a budget is created, read back and listed.
        r = await p.client.post("/v1/budgets", json={"name": "b", "amount_usd": "10"}, headers=auth(before["admin"]))
        assert r.status_code == 201, r.text
        budget_id = r.json()["budget_id"]
        listed = await p.client.get("/v1/budgets", headers=auth(before["admin"]))
        assert [b["budget_id"] for b in listed.json()] == [budget_id]

        # retention.lifecycle.v1 after the garbage: a cancellation becomes a schedule.
        r = await p.client.post("/v1/admin/workspace/cancel", headers=auth(cancelled["admin"]))
        assert r.status_code == 200, r.text

        async def scheduled() -> bool:
            await p.retention.schedules.table.catch_up()
            return cancelled["workspace_id"] in {s.workspace_id for s in p.retention.schedules.all()}

        await eventually(scheduled)

        # retention.requests / commands / reports after the garbage: an erasure runs through every owner.
        r = await p.client.post("/v1/deletions", json={"customer_id": "cust-1"}, headers=auth(after["admin"]))
        assert r.status_code == 202, r.text
        request_id = r.json()["request_id"]

        async def verified() -> dict[str, Any] | None:
            view = await p.client.get(f"/v1/deletions/{request_id}", headers=auth(after["admin"]))
            body: dict[str, Any] = view.json()
            assert body["state"] != "failed", body
            return body if body["state"] == "verified" else None

        done = await eventually(verified, timeout=90, interval=0.5)
        assert done["reported"] == ["alerts", "ingest", "people", "rollup"]

        # No stuck partition: every group has committed past everything on its topic, garbage included.
        async def lags() -> dict[str, int]:
            return {
                group: await lag(iso.stack.kafka, f"{iso.prefix}{group}", topic_name(topic, iso.prefix))
                for group, topic in GROUPS
            }

        async def caught_up() -> bool:
            return not any((await lags()).values())

        try:
            await eventually(caught_up, timeout=60, interval=0.5)
        finally:
            print("uncommitted records per group:", await lags())
        assert (await p.client.get("/readyz")).status_code == 200
