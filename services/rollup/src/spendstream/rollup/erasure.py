"""rollup's part of the erasure saga: ClickHouse is rollup's alone.

For a `DeletionCommand` on `retention.commands.v1`:
  1. a repeated request id answers with the report stored the first time (`erasure_log`): same counts;
  2. whole workspace: wait until the workspace's data key is gone from this process's key ring (ingest
     shreds it); from then on nothing of the tenant can be decrypted, so nothing can be stored again;
  3. wait until the usage and audit consumer groups have committed past every record that was on
     `usage.events.v1` and `audit.records.v1` at that moment: whatever was accepted (or audited) before the
     erasure is stored now, so the delete sees it all (the audit log's rows and head count in the report as
     clickhouse:audit_records and clickhouse:audit_heads; the receipt keeps those counts, no record);
  4. on every table of the database that has the scope's columns (found, not listed: a table added later
     is covered too), `ALTER TABLE … DELETE … SETTINGS mutations_sync = 2`: a heavyweight mutation that
     rewrites the parts, so no byte of the rows waits for a merge (a lightweight DELETE only masks them);
  5. count with `apply_deleted_mask = 0` (masked rows would still count); anything left (the reconciler
     raced us) is deleted again, three passes at most; the report says what stayed.
A failure at 2 or 3 (timeout) is reported as failed with a code; retention sends the command again.
The report is returned to `erasure_owner.serve_erasure`, which publishes it before the command is committed.
Verification queries name placeholders, never values: reports travel on Kafka and end in receipts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from clickhouse_connect.driver.client import Client

from spendstream.common.erasure import (
    DeletionCommand,
    DeletionReport,
    ErasureScope,
    Owner,
    StoreCount,
    Verification,
)
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import AUDIT_RECORDS, USAGE_EVENTS, topic_name
from spendstream.rollup.erased import ErasedSubjects
from spendstream.rollup.ledger import Ledger
from spendstream.rollup.settings import RollupSettings

log = logging.getLogger(__name__)
PASSES = 3


class EraseFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _where(scope: ErasureScope) -> tuple[str, dict[str, str]]:
    if scope.customer_id is None:
        return "workspace_id = {workspace_id:String}", {"workspace_id": scope.workspace_id}
    return (
        "workspace_id = {workspace_id:String} AND customer_id = {customer_id:String}",
        {"workspace_id": scope.workspace_id, "customer_id": scope.customer_id},
    )


class ClickHouseEraser:
    """The synchronous ClickHouse half: which tables hold a scope, delete it physically, count it."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self.db = database  # erasure_log: schema.py, migration 6

    def tables(self, scope: ErasureScope) -> list[str]:
        """Every MergeTree table of the database holding the scope's columns (views hold no rows)."""
        needed = {"workspace_id"} if scope.customer_id is None else {"workspace_id", "customer_id"}
        rows = self._client.query(
            "SELECT t.name, groupArray(c.name) FROM system.tables AS t INNER JOIN system.columns AS c "
            "ON c.database = t.database AND c.table = t.name WHERE t.database = {db:String} "
            "AND t.engine LIKE '%MergeTree' GROUP BY t.name ORDER BY t.name",
            parameters={"db": self.db},
        ).result_rows
        return [name for name, columns in rows if needed <= set(columns)]

    def count(self, table: str, scope: ErasureScope) -> int:
        where, params = _where(scope)
        result = self._client.query(
            f"SELECT count() FROM {self.db}.{table} WHERE {where}",
            parameters=params,
            settings={"apply_deleted_mask": 0},
        )
        return int(result.result_rows[0][0])

    def delete(self, table: str, scope: ErasureScope) -> None:
        where, params = _where(scope)
        self._client.command(
            f"ALTER TABLE {self.db}.{table} DELETE WHERE {where}", parameters=params, settings={"mutations_sync": 2}
        )

    def erase(self, scope: ErasureScope) -> tuple[list[StoreCount], list[Verification]]:
        tables = self.tables(scope)
        before = {t: self.count(t, scope) for t in tables}
        after = dict(before)
        for _ in range(PASSES):
            for table in [t for t in tables if after[t]]:
                self.delete(table, scope)
            after = {t: self.count(t, scope) for t in tables}
            if not any(after.values()):
                break
        where, _ = _where(scope)
        counts = [StoreCount(store=f"clickhouse:{t}", before=before[t], after=after[t]) for t in tables]
        checks = [
            Verification(
                store=f"clickhouse:{t}",
                query=f"SELECT count() FROM {t} WHERE {where} SETTINGS apply_deleted_mask = 0",
                result=after[t],
            )
            for t in tables
        ]
        return counts, checks

    def recorded(self, request_id: str) -> dict[str, Any] | None:
        rows = self._client.query(
            f"SELECT report FROM {self.db}.erasure_log FINAL WHERE request_id = {{id:String}}",
            parameters={"id": request_id},
        ).result_rows
        if not rows:
            return None
        loaded: dict[str, Any] = json.loads(rows[0][0])
        return loaded

    def record(self, request_id: str, document: dict[str, Any]) -> None:
        self._client.insert(
            f"{self.db}.erasure_log", [(request_id, json.dumps(document))], column_names=("request_id", "report")
        )


class RollupErasure:
    """Carries out deletion commands on rollup's ClickHouse data."""

    owner: Owner = "rollup"

    def __init__(
        self,
        *,
        client: Client,
        settings: RollupSettings,
        keyring: KeyRing,
        writer_lock: asyncio.Lock | None = None,
        wait_seconds: float = 60.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        erased: ErasedSubjects | None = None,
        ledger: Ledger | None = None,
        forget_workspace: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        self._erased = erased
        self._ledger = ledger
        # What rollup keeps of a workspace outside ClickHouse (its negotiated rates), dropped with it.
        self._forget_workspace = forget_workspace
        self.clickhouse = ClickHouseEraser(client, settings.clickhouse_database)
        self._settings = settings
        self._keyring = keyring
        self._wait = wait_seconds
        self._now = now
        # The consumers whose records must be stored before the delete: usage events, and audit records (the
        # erasure's own request among them), so that nothing of the workspace is stored after it.
        self._drained = [
            (topic_name(USAGE_EVENTS, settings.topic_prefix), USAGE_EVENTS.partitions, settings.group_id),
            (topic_name(AUDIT_RECORDS, settings.topic_prefix), AUDIT_RECORDS.partitions, f"{settings.group_id}-audit"),
        ]
        self._lock = asyncio.Lock()
        # The consumer's writes and the reconciler hold this lock: without it, a reconcile pass that read the
        # raw table before our delete could write its correction into the rollup after it.
        self._writer_lock = writer_lock or asyncio.Lock()

    async def erase(self, command: DeletionCommand) -> DeletionReport:
        """Delete and verify; a repeated request id answers with the report stored the first time."""
        # Request ids are per workspace: logged under both, one workspace's request never answers for another's.
        logged = f"{command.scope.workspace_id}/{command.request_id}"
        async with self._lock:  # one mutation at a time: they queue in ClickHouse anyway
            stored = await asyncio.to_thread(self.clickhouse.recorded, logged)
            if stored is not None:
                return DeletionReport.model_validate(
                    {**stored, "request_id": command.request_id, "owner": "rollup", "scope": command.scope}
                )
            try:
                if command.scope.customer_id is None:
                    await self._await_shredded(command.scope.workspace_id)
                await self._await_drained()
            except EraseFailed as exc:
                log.warning("erasure postponed", extra={"request_id": command.request_id, "reason": exc.reason})
                return DeletionReport(
                    request_id=command.request_id,
                    owner="rollup",
                    scope=command.scope,
                    status="failed",
                    counts=[],
                    verifications=[],
                    reason=exc.reason,
                    finished_at=self._now(),
                )
            # Not held while waiting above: the consumer must keep storing (and committing) to drain.
            async with self._writer_lock:
                customer = command.scope.customer_id
                if customer is not None and self._erased is not None:
                    # Before the delete: a replay of the customer's older records must not bring them back.
                    await asyncio.to_thread(self._erased.add, command.scope.workspace_id, customer, self._now())
                if customer is not None and self._ledger is not None:
                    # The completeness ledger counts them as erased, not lost (a workspace's ledger goes with it).
                    await asyncio.to_thread(self._ledger.record_erased, command.scope.workspace_id, customer, logged)
                counts, checks = await asyncio.to_thread(self.clickhouse.erase, command.scope)
            if command.scope.customer_id is None and self._forget_workspace is not None:
                await self._forget_workspace(command.scope.workspace_id)
            document = {
                "status": "done",
                "counts": [c.model_dump() for c in counts],
                "verifications": [v.model_dump() for v in checks],
                "reason": None,
                "finished_at": self._now().isoformat(),
            }
            await asyncio.to_thread(self.clickhouse.record, logged, document)
            log.info("erased", extra={"request_id": command.request_id, "rows": sum(c.before for c in counts)})
            return DeletionReport.model_validate(
                {**document, "request_id": command.request_id, "owner": "rollup", "scope": command.scope}
            )

    async def _await_shredded(self, workspace_id: str) -> None:
        deadline = asyncio.get_running_loop().time() + self._wait
        while True:
            await self._keyring.table.catch_up()
            if self._keyring.current_version(workspace_id) is None:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise EraseFailed("data_key_not_shredded")
            await asyncio.sleep(0.2)

    async def _await_drained(self) -> None:
        for topic, partitions, group in self._drained:
            await self._await_group(topic, partitions, f"{self._settings.topic_prefix}{group}")

    async def _await_group(self, topic: str, count: int, group: str) -> None:
        """Return once `group` has committed every record present on `topic` now."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers, group_id=None, enable_auto_commit=False
        )
        admin = AIOKafkaAdminClient(bootstrap_servers=self._settings.kafka_bootstrap_servers)
        await consumer.start()
        await admin.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(count)]
            ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
            deadline = asyncio.get_running_loop().time() + self._wait
            while True:
                committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
                behind = [
                    tp for tp, end in ends.items() if end > 0 and (tp not in committed or committed[tp].offset < end)
                ]
                if not behind:
                    return
                if asyncio.get_running_loop().time() > deadline:
                    raise EraseFailed(
                        "usage_consumer_behind" if topic.endswith(USAGE_EVENTS.name) else "audit_consumer_behind"
                    )
                await asyncio.sleep(0.2)
        finally:
            await admin.close()
            await consumer.stop()
