"""Consuming `usage.events.v1`: count spend once per record, then evaluate the budgets it touched.

Per Kafka batch: decrypt -> count (spend.py, atomic per record) -> evaluate the touched workspaces' budgets and
publish what fired (thresholds.py) -> return, and FastStream commits the offsets (NACK_ON_ERROR). An exception
anywhere seeks back and the batch comes again: counting skips what it already counted, evaluation fires only
what has not fired. A record that cannot be decrypted (a shredded key) is skipped; rollup dead-letters it. One
whose data key the KEK cannot unwrap (another KEK wrapped it) waits and comes again (key_backoff.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from spendstream.alerts import metrics
from spendstream.alerts.spend import CountedRecord, SpendCounter
from spendstream.alerts.thresholds import Evaluator
from spendstream.common.envelope import UnreadableRecord, read_record
from spendstream.common.key_backoff import KeyBackoff
from spendstream.common.records import BudgetRecord
from spendstream.common.tenants import KeyRing, KeyUnavailable


class Budgets(Protocol):
    """The budgets of a workspace (BudgetBook, replayed from alerts.budgets.v1)."""

    def of_workspace(self, workspace_id: str) -> list[BudgetRecord]: ...


class SpendTracker:
    def __init__(
        self,
        keyring: KeyRing,
        counter: SpendCounter,
        evaluator: Evaluator,
        book: Budgets,
        clock: Callable[[], datetime],
        key_backoff: KeyBackoff | None = None,
    ) -> None:
        self._keyring = keyring
        self._key_backoff = key_backoff or KeyBackoff("alerts")
        self._counter = counter
        self._evaluator = evaluator
        self._book = book
        self._clock = clock

    async def handle(self, records: Sequence[Any]) -> None:
        """Count and evaluate one Kafka batch (aiokafka ConsumerRecords); returns once alerts are published."""
        counted: list[CountedRecord] = []
        ingested: dict[str, float] = {}
        for record in records:
            try:
                envelope, events, _ = await read_record(record.value, self._keyring)
            except UnreadableRecord as exc:
                metrics.RECORDS_UNREADABLE.labels(exc.reason).inc()
                continue
            except KeyUnavailable as exc:
                await self._key_backoff.wait(exc)
                raise
            counted.append(CountedRecord(envelope.workspace_id, record.topic, record.partition, record.offset, events))
            ingested[envelope.workspace_id] = max(
                ingested.get(envelope.workspace_id, 0.0), envelope.ingested_at.timestamp()
            )
        if not counted:
            return
        workspaces = {c.workspace_id for c in counted}
        scopes: dict[str, set[tuple[str, str]]] = {
            ws: {(b.scope.tag, b.scope.value) for b in self._book.of_workspace(ws) if b.scope is not None}
            for ws in workspaces
        }
        new = await self._counter.count(counted, scopes)
        metrics.RECORDS_COUNTED.inc(new)
        metrics.RECORDS_SKIPPED.inc(len(counted) - new)
        now = self._clock()
        for ws in workspaces:
            for budget in self._book.of_workspace(ws):
                fired = await self._evaluator.evaluate(budget, now)
                for _ in fired:
                    metrics.INGEST_TO_FIRED_SECONDS.observe(max(0.0, time.time() - ingested[ws]))
