"""rollup's erasure owner: physical deletion in every ClickHouse table, and exact remainders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from spendstream.common.erasure import DeletionCommand, ErasureScope
from spendstream.common.tenants import KeyRing
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.erasure import RollupErasure
from spendstream.rollup.schema import migrate
from spendstream.rollup.settings import RollupSettings
from tests.retention.pipeline import figures, raw_count, reports, rows_of_table_with, send_command, shred
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = [pytest.mark.integration]


async def _stream(client: Any, key: str, events: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/events", json={"events": events}, headers=auth(key))
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(events)


async def _stored(iso: Isolation, workspace_id: str, n: int) -> None:
    async def check() -> bool:
        return raw_count(iso, "usage_events", "workspace_id = {ws:String}", {"ws": workspace_id}) == n

    await eventually(check, timeout=20)


async def test_workspace_erasure_leaves_no_row_in_any_table_and_other_workspaces_exact(iso: Isolation) -> None:
    gone, kept = await create_workspace(iso, "gone"), await create_workspace(iso, "kept")
    async with serving(
        [create_ingest(iso.settings(IngestSettings)), create_rollup(iso.settings(RollupSettings))]
    ) as client:
        await _stream(
            client,
            gone["ingest"],
            [
                usage_event(cost_usd=0.5, tags={"feature": "chat", "customer_id": "c1"}),
                usage_event(cost_usd=0.25, tags={"feature": "chat", "customer_id": "c2"}),
                usage_event(cost_usd=1.125, tags={"feature": "search", "customer_id": "c1"}),
            ],
        )
        await _stream(
            client,
            kept["ingest"],
            [
                usage_event(cost_usd=0.01, tags={"feature": "chat", "customer_id": "c1"}),
                usage_event(cost_usd=2.5, tags={"feature": "search", "customer_id": "c9"}),
            ],
        )
        await _stored(iso, gone["workspace_id"], 3)
        await _stored(iso, kept["workspace_id"], 2)
        kept_before = figures(iso, kept["workspace_id"])

        await shred(iso, gone["workspace_id"])  # ingest's part of the saga, done by hand here
        await send_command(iso, "req-ws-1", gone["workspace_id"])
        (report,) = await reports(iso, "req-ws-1", "rollup")

        tables = rows_of_table_with(iso, "workspace_id")
        assert {"usage_events", "usage_daily", "workspace_watermarks"} <= set(tables)
        assert report.owner == "rollup" and report.status == "done"
        counts = {c.store: (c.before, c.after) for c in report.counts}
        assert counts["clickhouse:usage_events"] == (3, 0)
        assert counts["clickhouse:usage_daily"][1] == 0 and counts["clickhouse:usage_daily"][0] >= 2
        assert counts["clickhouse:workspace_watermarks"][1] == 0
        assert set(counts) == {f"clickhouse:{t}" for t in tables}
        assert all(v.result == 0 and "apply_deleted_mask = 0" in v.query for v in report.verifications)
        assert all(gone["workspace_id"] not in v.query for v in report.verifications)
        for table in tables:
            assert raw_count(iso, table, "workspace_id = {ws:String}", {"ws": gone["workspace_id"]}) == 0, table
        assert figures(iso, kept["workspace_id"]) == kept_before
        assert kept_before["raw"] == [("c1", "1", "0.01", "1000", "200"), ("c9", "1", "2.5", "1000", "200")]

        # The same command again is a no-op that answers with the very same counts.
        await send_command(iso, "req-ws-1", gone["workspace_id"])
        again = await reports(iso, "req-ws-1", "rollup", at_least=2)
        assert len(again) == 2 and again[1].counts == report.counts


async def test_customer_erasure_removes_only_that_customer_and_leaves_exact_rollups(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    # Yesterday noon: always in the past, whatever the hour the suite runs (today's noon is the future before it).
    day = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
    async with serving(
        [create_ingest(iso.settings(IngestSettings)), create_rollup(iso.settings(RollupSettings))]
    ) as client:
        await _stream(
            client,
            ws["ingest"],
            [
                usage_event(cost_usd=0.5, timestamp=day.isoformat(), tags={"feature": "chat", "customer_id": "c1"}),
                usage_event(cost_usd=0.75, timestamp=day.isoformat(), tags={"feature": "chat", "customer_id": "c2"}),
                usage_event(cost_usd=0.125, timestamp=day.isoformat(), tags={"feature": "search", "customer_id": "c1"}),
                usage_event(cost_usd=3.0, timestamp=day.isoformat(), tags={"feature": "search", "customer_id": "c3"}),
            ],
        )
        await _stored(iso, ws["workspace_id"], 4)

        await send_command(iso, "req-cust-1", ws["workspace_id"], customer_id="c1")
        (report,) = await reports(iso, "req-cust-1", "rollup")

    assert report.status == "done"
    counts = {c.store: (c.before, c.after) for c in report.counts}
    # Tables without a customer_id column hold nothing of a customer and are not touched (revenue has the column,
    # and no record of this customer: tests/rollup/test_margin.py erases one that has).
    assert counts == {"clickhouse:usage_events": (2, 0), "clickhouse:usage_daily": (2, 0), "clickhouse:revenue": (0, 0)}
    assert all("c1" not in v.query for v in report.verifications)
    for table in rows_of_table_with(iso, "customer_id"):
        assert raw_count(iso, table, "customer_id = {c:String}", {"c": "c1"}) == 0
    d = day.date().isoformat()
    assert figures(iso, ws["workspace_id"]) == {
        "raw": [("c2", "1", "0.75", "1000", "200"), ("c3", "1", "3", "1000", "200")],
        "daily": [(d, "c2", "chat", "1", "0.75", "1000"), (d, "c3", "search", "1", "3", "1000")],
    }


async def test_workspace_erasure_waits_for_the_shredded_key_and_reports_failed_without_it(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    settings = iso.settings(RollupSettings)
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    keyring = KeyRing(settings)
    await keyring.table.start()
    try:
        erasure = RollupErasure(client=client, settings=settings, keyring=keyring, wait_seconds=0.5)
        command = DeletionCommand(
            request_id="early", issued_at=datetime.now(UTC), scope=ErasureScope(workspace_id=ws["workspace_id"])
        )
        # The data key still exists: rows deleted now could be stored again from Kafka, so nothing is done.
        report = await erasure.erase(command)
        assert (report.status, report.reason, report.counts) == ("failed", "data_key_not_shredded", [])
        await shred(iso, ws["workspace_id"])
        report = await erasure.erase(command)
        assert report.status == "done" and all(c.before == 0 == c.after for c in report.counts)
    finally:
        await keyring.table.stop()


async def test_a_replay_of_the_topic_after_a_customer_erasure_does_not_bring_the_customer_back(iso: Isolation) -> None:
    """The envelopes stay on Kafka (readable with the workspace key) for the topic's retention; a consumer
    group reading them again must not store the erased customer's older events, and must store new ones."""
    ws = await create_workspace(iso)
    async with serving(
        [create_ingest(iso.settings(IngestSettings)), create_rollup(iso.settings(RollupSettings))]
    ) as client:
        await _stream(
            client,
            ws["ingest"],
            [
                usage_event(cost_usd=0.5, tags={"customer_id": "c1"}),
                usage_event(cost_usd=0.25, tags={"customer_id": "c2"}),
            ],
        )
        await _stored(iso, ws["workspace_id"], 2)
        await send_command(iso, "req-replay-1", ws["workspace_id"], customer_id="c1")
        (report,) = await reports(iso, "req-replay-1", "rollup")
        assert report.status == "done"
        await _stream(client, ws["ingest"], [usage_event(cost_usd=2.0, tags={"customer_id": "c1"})])
        await _stored(iso, ws["workspace_id"], 2)  # c2's old event and c1's new one

    # A second consumer group reads the whole topic again into the same tables.
    replayer = iso.settings(RollupSettings, group_id="spendstream-rollup-replay")
    async with serving([create_rollup(replayer)]) as client:
        await eventually(lambda: _caught_up(iso, "spendstream-rollup-replay"), timeout=30)
        ledger = (await client.get("/v1/completeness", headers=auth(ws["read"]))).json()["days"]
    assert figures(iso, ws["workspace_id"])["raw"] == [
        ("c1", "1", "2", "1000", "200"),
        ("c2", "1", "0.25", "1000", "200"),
    ]
    # The erased event is counted as erased, not lost: once by the erasure, once more left out by the replay.
    [today] = ledger
    counts = ("accepted", "on_topic", "dead_lettered", "erased", "stored_raw", "in_rollup")
    assert [today[c] for c in counts] == [3, 3, 0, 1, 2, 2]
    assert today["gaps"] == {"topic": 0, "raw": 0, "rollup": 0}


async def _caught_up(iso: Isolation, group: str) -> bool:
    from tests.rollup.kafka import lag

    return await lag(iso, group) == 0
