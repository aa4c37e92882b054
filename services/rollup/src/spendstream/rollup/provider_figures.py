"""The providers' own figures (connectors.usage.v1) in ClickHouse: stored per connector and day, read back as
the latest read of each day.

A `ProviderDay` is the whole of one connector's day: its rows replace the day's earlier rows (same sort key, a
later `pulled_at` wins in the ReplacingMergeTree), and rows an earlier read had but this one has not are left
out at read time, which takes only the rows of the latest read of each (connector, day) in `provider_days`.
A day read twice with the same figures stores the same rows: a redelivered or re-read record counts once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from spendstream.common.records import ProviderDay

USAGE_COLUMNS = (
    "workspace_id",
    "connector_id",
    "provider",
    "day",
    "model",
    "project",
    "api_key",
    "input_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "output_tokens",
    "requests",
    "cost",
    "currency",
    "source",
    "pulled_at",
)
TOKEN_MEASURES = (
    "input_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "output_tokens",
)


class ProviderFigures:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self.db = database

    def store(self, days: Sequence[ProviderDay]) -> None:
        usage = [
            (
                d.workspace_id,
                d.connector_id,
                d.provider,
                d.day,
                r.model,
                r.project,
                r.api_key,
                r.input_tokens,
                r.cached_input_tokens,
                r.cache_creation_input_tokens,
                r.cache_creation_1h_input_tokens,
                r.output_tokens,
                r.requests,
                r.cost,
                r.currency,
                d.source,
                d.pulled_at,
            )
            for d in days
            for r in d.rows
        ]
        if usage:
            self._client.insert(f"{self.db}.provider_usage", usage, column_names=list(USAGE_COLUMNS))
        # After the rows: a read of the day is visible only once its rows are stored.
        self._client.insert(
            f"{self.db}.provider_days",
            [(d.workspace_id, d.connector_id, d.provider, d.day, d.pulled_at) for d in days],
            column_names=["workspace_id", "connector_id", "provider", "day", "pulled_at"],
        )

    def latest(
        self, workspace_id: str, start: date, end: date, projects: Mapping[str, Sequence[str]] | None = None
    ) -> list[dict[str, Any]]:
        """Per day, provider and model: the latest read's tokens, requests (None where the provider counts
        none), cost, currency and when it was read. `projects` narrows a connector to those provider scopes."""
        params: dict[str, Any] = {"ws": workspace_id, "start": start, "end": end}
        narrow = ""
        for i, (connector_id, scopes) in enumerate(sorted((projects or {}).items())):
            narrow += f" AND (u.connector_id != {{c{i}:String}} OR u.project IN {{p{i}:Array(String)}})"
            params[f"c{i}"], params[f"p{i}"] = connector_id, list(scopes)
        sums = ", ".join(f"toInt64(sum(u.{m})) AS {m}" for m in TOKEN_MEASURES)
        result = self._client.query(
            f"""SELECT u.day AS day, u.provider AS provider, u.model AS model, {sums},
                       if(countIf(u.requests IS NULL) > 0, NULL, toInt64(sum(ifNull(u.requests, 0)))) AS requests,
                       if(countIf(u.cost IS NOT NULL) = 0, NULL, sum(ifNull(u.cost, 0))) AS cost,
                       any(u.currency) AS currency, max(d.latest) AS pulled_at
                FROM {self.db}.provider_usage AS u FINAL
                INNER JOIN (
                    SELECT connector_id, day, max(pulled_at) AS latest FROM {self.db}.provider_days
                    WHERE workspace_id = {{ws:String}} AND day >= {{start:Date}} AND day <= {{end:Date}}
                    GROUP BY connector_id, day
                ) AS d ON u.connector_id = d.connector_id AND u.day = d.day AND u.pulled_at = d.latest
                WHERE u.workspace_id = {{ws:String}} AND u.day >= {{start:Date}} AND u.day <= {{end:Date}}{narrow}
                GROUP BY day, provider, model ORDER BY day, provider, model""",
            parameters=params,
        )
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def read_days(self, workspace_id: str, start: date, end: date) -> dict[tuple[date, str], datetime]:
        """(day, provider) -> the earliest of its connectors' latest reads (what settles a day)."""
        result = self._client.query(
            f"""SELECT day, provider, min(latest) FROM (
                    SELECT day, provider, connector_id, max(pulled_at) AS latest FROM {self.db}.provider_days
                    WHERE workspace_id = {{ws:String}} AND day >= {{start:Date}} AND day <= {{end:Date}}
                    GROUP BY day, provider, connector_id)
                GROUP BY day, provider""",
            parameters={"ws": workspace_id, "start": start, "end": end},
        )
        return {(d, p): at for d, p, at in result.result_rows}

    def workspaces(self, since: date) -> list[str]:
        result = self._client.query(
            f"SELECT DISTINCT workspace_id FROM {self.db}.provider_days WHERE day >= {{since:Date}}",
            parameters={"since": since},
        )
        return [str(r[0]) for r in result.result_rows]
