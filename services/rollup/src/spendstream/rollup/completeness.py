"""Watching the completeness ledger and the price table's blind spots; raising each finding once.

Every `completeness_check_seconds` (periodic work):
  * the ledger (ledger.py) of the last `completeness_days` days, over the envelopes ingested at least
    `completeness_grace_seconds` ago (and since the ledger exists: older envelopes were never tallied). Those
    had the whole grace to travel, be stored, be summed and be repaired, so any difference left is a loss (or
    an unconfirmed surplus), not events in flight. The `rollup` stage cannot be cut by ingestion time (the
    daily rollup does not keep it): a difference there counts once it was seen for the whole grace.
    `spendstream_completeness_gap_events{stage}` is the sum of those differences (absolute) across workspaces
    and days; each (workspace, day, stage, difference) raises one `completeness_gap` alert.
  * models the price table could not price (their events stored with cost_source `unknown`, never as a silent
    $0): one `unpriced_model` alert per (workspace, provider, model), with its events and tokens so far.
An alert is a `DataAlert` on `rollup.alerts.v1`, which alerts delivers to the workspace's budget channels; it is
recorded in `data_alerts` after the publish, so a restart raises nothing twice (a crash in between publishes it
again with the same id, which receivers recognise).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

from clickhouse_connect.driver.client import Client

from spendstream.common.records import DataAlert
from spendstream.rollup import metrics
from spendstream.rollup.ledger import COUNTS, STAGES, Ledger

log = logging.getLogger(__name__)


def alert_id(*parts: object) -> str:
    """Stable per finding: the same finding raised again has the same id."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


class CompletenessWatch:
    def __init__(
        self,
        *,
        client: Client,
        database: str,
        ledger: Ledger,
        publish: Callable[[DataAlert], Awaitable[object]],
        grace_seconds: float,
        days: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self.db = database
        self._ledger = ledger
        self._publish = publish
        self._grace = timedelta(seconds=grace_seconds)
        self._days = days
        self._now = now
        # (workspace, day) -> when its nonzero `rollup` difference was first seen (in memory: a restart waits anew).
        self._rollup_seen: dict[tuple[str, date], datetime] = {}

    async def run_once(self) -> None:
        gaps = await self.check()
        for stage in STAGES:
            metrics.COMPLETENESS_GAP_EVENTS.labels(stage).set(sum(abs(g[3]) for g in gaps if g[2] == stage))
        await self.raise_unpriced()

    async def check(self) -> list[tuple[str, date, str, int]]:
        """The differences that outlived the grace, as (workspace, day, stage, difference); each raised once."""
        now = self._now()
        since = await asyncio.to_thread(self._ledger.since)
        if since is None:
            return []
        end = now.date()
        start = end - timedelta(days=self._days)
        settled = await asyncio.to_thread(
            partial(
                self._ledger.days,
                None,
                start,
                end,
                ingested_before=now - self._grace,
                ingested_since=since,
                only=[c for c in COUNTS if c != "in_rollup"],
            )
        )
        whole = await asyncio.to_thread(partial(self._ledger.days, None, start, end, only=("stored_raw", "in_rollup")))
        found: list[tuple[str, date, str, int]] = []
        for (ws, day), counts in settled.items():
            gaps = counts.gaps()
            found += [(ws, day, stage, gaps[stage]) for stage in ("topic", "raw") if gaps[stage]]
        rollup_now: set[tuple[str, date]] = set()
        for key, counts in whole.items():
            gap = counts.gaps()["rollup"]
            if not gap:
                continue
            rollup_now.add(key)
            first = self._rollup_seen.setdefault(key, now)
            if now - first >= self._grace:
                found.append((*key, "rollup", gap))
        self._rollup_seen = {k: v for k, v in self._rollup_seen.items() if k in rollup_now}
        for ws, day, stage, gap in found:
            await self.raise_once(
                DataAlert(
                    alert_id=alert_id(ws, day.isoformat(), stage, gap),
                    workspace_id=ws,
                    kind="completeness_gap",
                    day=day.isoformat(),
                    stage=stage,
                    gap_events=gap,
                    fired_at=now,
                )
            )
        return found

    async def raise_unpriced(self) -> None:
        """One alert per (workspace, provider, model) the price table cannot price."""
        now = self._now()
        rows = await asyncio.to_thread(self._unpriced, now.date() - timedelta(days=self._days))
        for ws, provider, model, events, tokens in rows:
            await self.raise_once(
                DataAlert(
                    alert_id=alert_id(ws, "unpriced", provider, model),
                    workspace_id=ws,
                    kind="unpriced_model",
                    provider=provider,
                    model=model,
                    events=events,
                    tokens=tokens,
                    fired_at=now,
                )
            )

    def _unpriced(self, start: date) -> list[tuple[str, str, str, int, int]]:
        rows = self._client.query(
            "SELECT workspace_id, provider, model, sum(requests), sum(input_tokens + output_tokens) "
            f"FROM {self.db}.usage_daily WHERE day >= {{start:Date}} AND cost_source = 'unknown' "
            "GROUP BY workspace_id, provider, model HAVING sum(requests) > 0 ORDER BY workspace_id, provider, model",
            parameters={"start": start},
        ).result_rows
        return [(str(w), str(p), str(m), int(n), int(t)) for w, p, m, n, t in rows]

    async def raise_once(self, alert: DataAlert) -> None:
        """Publish the alert unless it was raised before (data_alerts), then record it."""
        if await asyncio.to_thread(self._raised, alert):
            return
        await self._publish(alert)
        await asyncio.to_thread(self._record, alert)
        metrics.DATA_ALERTS.labels(alert.kind).inc()
        extra: dict[str, Any] = {"alert_id": alert.alert_id, "kind": alert.kind, "workspace_id": alert.workspace_id}
        if alert.stage is not None:
            extra.update(day=alert.day, stage=alert.stage, gap_events=alert.gap_events)
        log.warning("data alert raised", extra=extra)

    def _raised(self, alert: DataAlert) -> bool:
        rows = self._client.query(
            f"SELECT count() FROM {self.db}.data_alerts "
            "WHERE workspace_id = {ws:String} AND alert_id = {id:String}",
            parameters={"ws": alert.workspace_id, "id": alert.alert_id},
        ).result_rows
        return bool(rows[0][0])

    def _record(self, alert: DataAlert) -> None:
        self._client.insert(
            f"{self.db}.data_alerts",
            [(alert.workspace_id, alert.alert_id, alert.kind)],
            column_names=("workspace_id", "alert_id", "kind"),
        )
