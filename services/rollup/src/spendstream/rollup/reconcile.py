"""Keeping usage_daily equal to the deduplicated raw events: what drifted, and its correction (schema.py, 3)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

from clickhouse_connect.driver.client import Client

from spendstream.rollup.schema import DIMENSIONS, MEASURES

CORRECTION_COLUMNS = ("workspace_id", "day", *DIMENSIONS, "cost_source", *MEASURES)


class Repairs(Protocol):
    """The reconciling side of the store, as the consumer uses it (consumer.BatchWriter.repair, reconcile)."""

    def days_stored_since(self, since: datetime) -> list[date]: ...

    def reconcile(self, start: date, end: date, confirm_after: float = 0.0) -> int: ...


class Reconciler:
    """The Repairs of ClickHouse."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self.db = database

    def days_stored_since(self, since: datetime) -> list[date]:
        """Event days that received rows stored at or after `since` (what reconcile must look at)."""
        result = self._client.query(
            f"SELECT DISTINCT toDate(ts) FROM {self.db}.usage_events WHERE stored_at >= {{since:DateTime64(3, 'UTC')}}",
            # A zone-less string read as UTC: portable whatever the server's (or chDB host's) time zone.
            parameters={"since": since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]},
        )
        return sorted(r[0] for r in result.result_rows)

    def drift_sql(
        self,
        start: date,
        end: date,
        workspaces: Sequence[str] | None = None,
        models: Sequence[tuple[str, str]] | None = None,
        ordered: bool = True,
    ) -> tuple[str, dict[str, Any]]:
        """The query of `drift` and its parameters: its columns are usage_daily's CORRECTION_COLUMNS, in order.
        `workspaces` and `models` ((provider, model) pairs) narrow it to those groups when given."""
        only = " AND workspace_id IN {workspaces:Array(String)}" if workspaces is not None else ""
        if models is not None:
            only += " AND (provider, model) IN {models:Array(Tuple(String, String))}"
        keys = ", ".join(("workspace_id", "day", *DIMENSIONS, "cost_source"))
        raw = (
            f"SELECT workspace_id, toDate(ts) AS day, {', '.join(DIMENSIONS)}, cost_source, "
            "toInt64(count()) AS requests, toInt64(sum(input_tokens)) AS input_tokens, "
            "toInt64(sum(output_tokens)) AS output_tokens, toInt64(sum(cached_input_tokens)) AS "
            "cached_input_tokens, toInt64(sum(reasoning_tokens)) AS reasoning_tokens, "
            "toInt64(sum(cache_creation_input_tokens)) AS cache_creation_input_tokens, "
            "toInt64(sum(cache_creation_1h_input_tokens)) AS cache_creation_1h_input_tokens, "
            "toDecimal128(sum(cost_usd), 9) AS cost_usd, toInt64(sum(latency_ms)) AS latency_ms_sum "
            f"FROM {self.db}.usage_events FINAL WHERE toDate(ts) >= {{start:Date}} AND toDate(ts) <= "
            f"{{end:Date}}{only} GROUP BY {keys}"
        )
        # The rollup's groups negated, so that raw minus rollup is one sum per group: a UNION ALL and a GROUP BY
        # rather than a FULL JOIN, whose key columns come back as their type's default on the rollup-only side
        # (an Enum's first value: an 'unknown' group the raw rows left became a 'reported' correction).
        negated = ", ".join(
            f"toDecimal128(-sum({m}), 9) AS {m}" if m == "cost_usd" else f"toInt64(-sum({m})) AS {m}" for m in MEASURES
        )
        rolled = (
            f"SELECT {keys}, {negated} FROM {self.db}.usage_daily "
            f"WHERE day >= {{start:Date}} AND day <= {{end:Date}}{only} GROUP BY {keys}"
        )
        diff = (
            f"SELECT {keys}, {', '.join(f'sum({m}) AS {m}' for m in MEASURES)} "
            f"FROM ({raw} UNION ALL {rolled}) GROUP BY {keys} "
            f"HAVING {' OR '.join(f'{m} != 0' for m in MEASURES)}" + (f" ORDER BY {keys}" if ordered else "")
        )
        parameters = {"start": start, "end": end, "workspaces": list(workspaces or ()), "models": list(models or ())}
        return diff, parameters

    def drift(self, start: date, end: date, workspaces: Sequence[str] | None = None) -> list[tuple[Any, ...]]:
        """Rows that would make the rollup equal the deduplicated raw events over [start, end] (UTC days), of
        `workspaces` only when given."""
        sql, parameters = self.drift_sql(start, end, workspaces)
        return [tuple(r) for r in self._client.query(sql, parameters=parameters).result_rows]

    def reconcile(
        self, start: date, end: date, confirm_after: float = 0.0, workspaces: Sequence[str] | None = None
    ) -> int:
        """Make the rollup equal the deduplicated raw events over [start, end] (of `workspaces` only when
        given); returns corrected groups.

        An insert in flight elsewhere (another replica on a ClickHouse server) can show its raw part before
        its view part; that looks like drift for a moment. With `confirm_after` > 0 only drift seen
        identically twice, that many seconds apart, is corrected. In one process the writer and reconcile
        share a lock (consumer.py), so no insert is ever in flight and 0 is exact."""
        corrections = self.drift(start, end, workspaces)
        if corrections and confirm_after > 0:
            time.sleep(confirm_after)
            again = set(self.drift(start, end, workspaces))
            corrections = [c for c in corrections if c in again]
        if corrections:
            self._client.insert(
                f"{self.db}.usage_daily",
                corrections,
                column_names=CORRECTION_COLUMNS,
                # A correction may equal an earlier one byte for byte; it must still apply.
                settings={"insert_deduplicate": 0},
            )
        return len(corrections)
