"""The audit log end to end (issue 23, item 4): records a service publishes with `AuditTrail` on audit.records.v1
are stored by rollup's consumer and read back by Admins (admin keys) only, filtered and paged, exported as JSON
and CSV, and verified; tampering in ClickHouse makes /v1/audit/verify name the first bad record."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from spendstream.common.audit import AuditTrail
from spendstream.common.kafka import make_broker
from spendstream.common.records import AuditRecord
from spendstream.common.settings import BaseServiceSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.audit_chain import Head
from spendstream.rollup.audit_log import AuditLog
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.settings import RollupSettings
from tests.retention.pipeline import reports, send_command, shred
from tests.support import Isolation, auth, create_workspace, eventually, serving

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = "internal-token-of-the-audit-tests"


@asynccontextmanager
async def trail(iso: Isolation, service: str = "people") -> AsyncIterator[AuditTrail]:
    """A service's audit publisher on the test's topics, as every service holds one."""
    settings = iso.settings(BaseServiceSettings)
    broker = make_broker(settings, f"tests-{service}")
    await broker.connect()
    try:
        yield AuditTrail(settings, broker, service)
    finally:
        await broker.stop()


async def stored(http: httpx.AsyncClient, key: str, n: int, **params: str) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        answer = await http.get("/v1/audit", params={"limit": "1000", **params}, headers=auth(key))
        records: list[dict[str, Any]] = answer.json().get("records", []) if answer.status_code == 200 else []
        return records if len(records) >= n else None

    return await eventually(check, timeout=30)


async def test_published_records_are_stored_once_in_order_and_read_by_admins_only(iso: Isolation) -> None:
    ws, other = await create_workspace(iso, "ws"), await create_workspace(iso, "other")
    async with (
        serving([create_rollup(iso.settings(RollupSettings, batch_timeout_ms=50, internal_token=TOKEN))]) as http,
        trail(iso) as people,
    ):
        published: list[AuditRecord] = []
        for i in range(5):
            published.append(
                await people.record(
                    workspace_id=ws["workspace_id"],
                    actor_kind="member",
                    actor_id=f"mem_{i % 2}",
                    action="members.write" if i % 2 else "signin.password",
                    outcome="failure" if i == 4 else "allowed",
                    target=f"mem_{i}",
                    request_id=f"req_{i}",
                    client_address="203.0.113.9",
                )
            )
        await people.record(
            workspace_id=other["workspace_id"],
            actor_kind="key",
            actor_id="key_x",
            action="keys.issue",
            outcome="allowed",
        )
        records = await stored(http, ws["admin"], 5)
        # Newest first, each once, with gapless sequence numbers and its own workspace's records only.
        assert [r["seq"] for r in records] == [5, 4, 3, 2, 1]
        assert [r["record_id"] for r in records] == [p.record_id for p in reversed(published)]
        assert {r["workspace_id"] for r in records} == {ws["workspace_id"]}
        assert records[0]["outcome"] == "failure" and records[0]["client_hash"] == published[4].client_hash
        assert "203.0.113.9" not in json.dumps(records) and "mac" not in records[0]

        # Viewers' keys (read, ingest) may not read it; no key, 401.
        for scope in ("read", "ingest"):
            assert (await http.get("/v1/audit", headers=auth(ws[scope]))).status_code == 403
        assert (await http.get("/v1/audit")).status_code == 401
        assert (await http.get("/v1/audit/verify", headers=auth(ws["read"]))).status_code == 403
        assert (await http.get("/v1/audit/export", headers=auth(ws["read"]))).status_code == 403

        # Filters.
        mine = await http.get("/v1/audit", params={"actor_id": "mem_1"}, headers=auth(ws["admin"]))
        assert [r["seq"] for r in mine.json()["records"]] == [4, 2]
        failed = await http.get("/v1/audit", params={"outcome": "failure"}, headers=auth(ws["admin"]))
        assert [r["seq"] for r in failed.json()["records"]] == [5]
        signins = await http.get("/v1/audit", params={"action": "signin.password"}, headers=auth(ws["admin"]))
        assert [r["seq"] for r in signins.json()["records"]] == [5, 3, 1]
        now = datetime.now(UTC)
        window = {"from": (now - timedelta(minutes=5)).isoformat(), "to": (now + timedelta(minutes=5)).isoformat()}
        assert len((await http.get("/v1/audit", params=window, headers=auth(ws["admin"]))).json()["records"]) == 5
        future = {"from": (now + timedelta(days=1)).date().isoformat()}
        assert (await http.get("/v1/audit", params=future, headers=auth(ws["admin"]))).json()["records"] == []

        # Cursor paging: pages of two, every record once.
        seen: list[int] = []
        params: dict[str, str] = {"limit": "2"}
        while True:
            page = (await http.get("/v1/audit", params=params, headers=auth(ws["admin"]))).json()
            seen += [r["seq"] for r in page["records"]]
            if page["next_cursor"] is None:
                break
            params = {"limit": "2", "cursor": page["next_cursor"]}
        assert seen == [5, 4, 3, 2, 1]

        # Verify, over the API and its operator twin.
        verdict = (await http.get("/v1/audit/verify", headers=auth(ws["admin"]))).json()
        assert verdict["ok"] and verdict["records"] == 5 and verdict["first_bad"] is None
        internal = await http.get(
            "/internal/v1/audit/verify",
            params={"workspace_id": other["workspace_id"]},
            headers={"X-Internal-Token": TOKEN},
        )
        assert internal.json()["records"] == 1 and internal.json()["ok"]
        wrong = await http.get(
            "/internal/v1/audit/verify", params={"workspace_id": "x"}, headers={"X-Internal-Token": "nope"}
        )
        assert wrong.status_code == 401


BAD_PARAMETERS: list[tuple[dict[str, str], str | None]] = [
    ({"limit": "1001"}, None),
    ({"limit": "0"}, None),
    ({"cursor": "abc"}, None),
    ({"from": "yesterday"}, "invalid_time"),
    ({"from": "2026-12-02", "to": "2026-12-01"}, "invalid_range"),
    ({"outcome": "maybe"}, None),
]


async def test_bad_parameters_are_refused_with_a_precise_422(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with serving([create_rollup(iso.settings(RollupSettings))]) as http:

        async def ready() -> bool:  # the key table is replayed
            return (await http.get("/v1/audit", headers=auth(ws["admin"]))).status_code == 200

        await eventually(ready)
        for params, error in BAD_PARAMETERS:
            answer = await http.get("/v1/audit", params=params, headers=auth(ws["admin"]))
            assert answer.status_code == 422, (params, answer.text)
            if error is not None:
                assert answer.json()["error"] == error, params


async def test_export_streams_every_record_as_json_or_csv_and_verify_names_tampering(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with (
        serving([create_rollup(iso.settings(RollupSettings, batch_timeout_ms=50))]) as http,
        trail(iso, "alerts") as alerts,
    ):
        for i in range(4):
            await alerts.record(
                workspace_id=ws["workspace_id"],
                actor_kind="key",
                actor_id="key_1",
                action="budgets.write",
                outcome="allowed",
                target=f'budget,"{i}"\n',
                detail={"field": "amount_usd"},
            )
        await stored(http, ws["admin"], 4)

        document = (await http.get("/v1/audit/export", params={"format": "json"}, headers=auth(ws["admin"]))).json()
        assert document["workspace_id"] == ws["workspace_id"]
        assert [r["seq"] for r in document["records"]] == [1, 2, 3, 4]
        answer = await http.get("/v1/audit/export", params={"format": "csv"}, headers=auth(ws["admin"]))
        assert answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        assert [r["seq"] for r in rows] == ["1", "2", "3", "4"]
        assert rows[2]["target"] == 'budget,"2"\n' and json.loads(rows[2]["detail"]) == {"field": "amount_usd"}
        assert [r["hash"] for r in rows] == [r["hash"] for r in document["records"]]
        only = await http.get(
            "/v1/audit/export", params={"format": "json", "action": "keys.issue"}, headers=auth(ws["admin"])
        )
        assert only.json()["records"] == []

        clickhouse_client(iso.stack.clickhouse).command(
            f"ALTER TABLE {iso.database}.audit_records UPDATE actor_id = 'key_2' "
            "WHERE workspace_id = {ws:String} AND seq = 2",
            parameters={"ws": ws["workspace_id"]},
            settings={"mutations_sync": 2},
        )
        verdict = (await http.get("/v1/audit/verify", headers=auth(ws["admin"]))).json()
        assert verdict["ok"] is False and verdict["first_bad"] == {"seq": 2, "reason": "altered"}
        assert verdict["records"] == 4


async def test_records_stored_by_a_consumer_that_failed_before_committing_are_chained_once(
    iso: Isolation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's records are stored, then the handler fails before its offsets are committed (the head write
    fails, as a crash would stop it): Kafka delivers the batch again, to this consumer or the next process's,
    and each record is still chained once, without a gap."""
    ws = await create_workspace(iso)
    failures: list[int] = []
    real = AuditLog.insert_heads

    def failing_once(self: AuditLog, heads: list[Head]) -> None:
        if not failures:
            failures.append(1)
            raise ConnectionError("the process died between the records and their head")
        real(self, heads)

    def count() -> int:
        result = clickhouse_client(iso.stack.clickhouse).query(
            f"SELECT count() FROM {iso.database}.audit_records WHERE workspace_id = {{ws:String}}",
            parameters={"ws": ws["workspace_id"]},
        )
        return int(result.result_rows[0][0])

    async with trail(iso) as people:
        with monkeypatch.context() as patched:
            patched.setattr(AuditLog, "insert_heads", failing_once)
            async with serving([create_rollup(iso.settings(RollupSettings, batch_timeout_ms=200))]) as http:
                for i in range(3):
                    await people.record(
                        workspace_id=ws["workspace_id"],
                        actor_kind="member",
                        actor_id=f"m{i}",
                        action="keys.issue",
                        outcome="allowed",
                    )

                async def three() -> bool:
                    return bool(failures) and count() == 3

                await eventually(three, timeout=30)
        # A new process of rollup, the next record.
        async with serving([create_rollup(iso.settings(RollupSettings, batch_timeout_ms=50))]) as http:
            await people.record(
                workspace_id=ws["workspace_id"],
                actor_kind="member",
                actor_id="m3",
                action="keys.issue",
                outcome="allowed",
            )
            records = await stored(http, ws["admin"], 4)
            assert [r["seq"] for r in records] == [4, 3, 2, 1] and count() == 4
            verdict = (await http.get("/v1/audit/verify", headers=auth(ws["admin"]))).json()
            assert verdict["ok"] and verdict["records"] == 4 and verdict["last_seq"] == 4


async def test_a_workspace_erasure_removes_its_audit_log_counts_it_and_keeps_other_chains_verifying(
    iso: Isolation,
) -> None:
    gone, kept = await create_workspace(iso, "gone"), await create_workspace(iso, "kept")
    async with (
        serving([create_rollup(iso.settings(RollupSettings, batch_timeout_ms=50, internal_token=TOKEN))]) as http,
        trail(iso, "retention") as retention,
    ):
        for ws in (gone, kept, gone):
            await retention.record(
                workspace_id=ws["workspace_id"],
                actor_kind="key",
                actor_id="key_1",
                action="keys.issue",
                outcome="allowed",
            )
        await stored(http, gone["admin"], 2)
        await stored(http, kept["admin"], 1)
        # The erasure's own request is audited before the command (stored here before the key is shredded; one
        # consumed after the shred is dropped, below: either way nothing of it outlives the erasure).
        await retention.record(
            workspace_id=gone["workspace_id"],
            actor_kind="key",
            actor_id="key_1",
            action="workspace.lifecycle",
            outcome="allowed",
        )
        await stored(http, gone["admin"], 3)
        await shred(iso, gone["workspace_id"])  # ingest's part of the saga, done by hand here
        await send_command(iso, "req-audit-1", gone["workspace_id"])
        (report,) = await reports(iso, "req-audit-1", "rollup")
        counts = {c.store: (c.before, c.after) for c in report.counts}
        assert report.status == "done"
        assert counts["clickhouse:audit_records"] == (3, 0) and counts["clickhouse:audit_heads"][1] == 0
        # A record of the erased workspace arriving later starts no new chain.
        await retention.record(
            workspace_id=gone["workspace_id"], actor_kind="operator", actor_id="operator", action="x", outcome="success"
        )
        await retention.record(
            workspace_id=kept["workspace_id"],
            actor_kind="key",
            actor_id="key_2",
            action="keys.issue",
            outcome="allowed",
        )
        await stored(http, kept["admin"], 2)

        def rows(workspace_id: str) -> int:
            result = clickhouse_client(iso.stack.clickhouse).query(
                f"SELECT count() FROM {iso.database}.audit_records WHERE workspace_id = {{ws:String}}",
                parameters={"ws": workspace_id},
            )
            return int(result.result_rows[0][0])

        assert rows(gone["workspace_id"]) == 0 and rows(kept["workspace_id"]) == 2
        verdicts = [
            (
                await http.get(
                    "/internal/v1/audit/verify", params={"workspace_id": ws}, headers={"X-Internal-Token": TOKEN}
                )
            ).json()
            for ws in (gone["workspace_id"], kept["workspace_id"])
        ]
        assert verdicts[0] == {
            "ok": True,
            "records": 0,
            "first_bad": None,
            "first_seq": None,
            "last_seq": None,
            "head_hash": None,
        }
        assert verdicts[1]["ok"] and verdicts[1]["records"] == 2
