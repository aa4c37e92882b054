"""Metered figures beside the provider's (`GET /v1/reconciliation`), and the drift alerts they raise.

Per UTC day, provider and model: spendstream's tokens by kind, requests and cost (usage_daily) against what the
provider reported (provider_figures.py), with the difference (metered - provider) and its percentage of the
provider's figure. A connector's tag mapping (records.TagMapping) narrows both sides to the same scope: the
events whose tag takes one of the mapping's values, and the provider's projects (or workspaces) they map to.
A day is `settled` once the provider's figures for it were read at least `settle_seconds` after the day ended:
late corrections arrive within that delay, so a settled difference is real.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from spendstream.common.records import ConnectorRecord, DataAlert
from spendstream.rollup.provider_figures import TOKEN_MEASURES, ProviderFigures

GROUPS = ("day", "provider", "model")
MEASURES = (*TOKEN_MEASURES, "requests", "cost")


@dataclass(frozen=True, slots=True)
class Scope:
    """The mapping of one provider's connectors in a workspace: the tag and its values on the metered side, the
    provider's projects per connector on the other."""

    tag: str
    values: tuple[str, ...]
    projects: dict[str, tuple[str, ...]] = field(default_factory=dict)


def scopes(connectors: Iterable[ConnectorRecord], workspace_id: str) -> dict[str, Scope]:
    found: dict[str, Scope] = {}
    for c in connectors:
        if c.workspace_id != workspace_id or c.mapping is None:
            continue
        known = found.get(c.provider)
        values = tuple(sorted({*(known.values if known else ()), *c.mapping.values}))
        projects = {**(known.projects if known else {}), c.connector_id: tuple(sorted(set(c.mapping.values.values())))}
        found[c.provider] = Scope(c.mapping.tag, values, projects)
    return found


def _pct(difference: Decimal | int | None, base: Decimal | int | None) -> str | None:
    if difference is None or base is None or base == 0:
        return None
    return format((Decimal(difference) * 100 / Decimal(base)).quantize(Decimal("0.01")), "f")


def _text(value: Decimal | int | None) -> str | int | None:
    return format(value, "f") if isinstance(value, Decimal) else value


class Reconciliation:
    def __init__(self, client: Client, database: str, figures: ProviderFigures, settle_seconds: float) -> None:
        self._client = client
        self.db = database
        self._figures = figures
        self._settle = timedelta(seconds=settle_seconds)

    def _metered(self, workspace_id: str, start: date, end: date, narrow: dict[str, Scope]) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"ws": workspace_id, "start": start, "end": end}
        clauses = []
        for i, (provider, scope) in enumerate(sorted(narrow.items())):
            # The tag is one of usage_daily's columns (TagMapping allows only those): never user text in SQL.
            clauses.append(f"(provider != {{mp{i}:String}} OR {scope.tag} IN {{mv{i}:Array(String)}})")
            params[f"mp{i}"], params[f"mv{i}"] = provider, list(scope.values)
        extra = "".join(f" AND {c}" for c in clauses)
        sums = ", ".join(f"toInt64(sum({m})) AS {m}" for m in (*TOKEN_MEASURES, "requests"))
        result = self._client.query(
            f"SELECT day, provider, model, {sums}, sum(cost_usd) AS cost FROM {self.db}.usage_daily "
            f"WHERE workspace_id = {{ws:String}} AND day >= {{start:Date}} AND day <= {{end:Date}}{extra} "
            "GROUP BY day, provider, model HAVING requests != 0 ORDER BY day, provider, model",
            parameters=params,
        )
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def rows(
        self,
        workspace_id: str,
        start: date,
        end: date,
        group_by: Sequence[str],
        narrow: dict[str, Scope],
        now: datetime,
    ) -> list[dict[str, Any]]:
        """Side by side per group (a subset of day, provider, model), metered and provider figures with their
        differences (`reported`: the provider's figures). Only providers with a connector appear."""
        projects = {c: p for s in narrow.values() for c, p in s.projects.items()}
        provider_rows = self._figures.latest(workspace_id, start, end, projects)
        reads = self._figures.read_days(workspace_id, start, end)
        connected = {p for _, p in reads}
        metered_rows = [r for r in self._metered(workspace_id, start, end, narrow) if r["provider"] in connected]
        groups = [g for g in GROUPS if g in group_by]
        merged: dict[tuple[Any, ...], dict[str, Any]] = {}

        def entry(row: dict[str, Any]) -> dict[str, Any]:
            key = tuple(row[g] for g in groups)
            return merged.setdefault(
                key,
                {
                    "key": dict(zip(groups, key, strict=True)),
                    "metered": {m: (Decimal(0) if m == "cost" else 0) for m in MEASURES},
                    "reported": {m: None for m in MEASURES},
                    "currency": None,
                    "days": set(),
                },
            )

        for row in metered_rows:
            e = entry(row)
            for m in MEASURES:
                e["metered"][m] += row[m]
            e["days"].add((row["day"], row["provider"]))
        for row in provider_rows:
            e = entry(row)
            for m in MEASURES:
                if row[m] is not None:
                    e["reported"][m] = (e["reported"][m] or 0) + row[m]
            e["currency"] = row["currency"]
            e["days"].add((row["day"], row["provider"]))
        out = []
        for key in sorted(merged, key=lambda k: tuple(str(v) for v in k)):
            e = merged[key]
            settled = all(self.settled(d, reads.get((d, p)), now) for d, p in e["days"])
            difference = {m: None if e["reported"][m] is None else e["metered"][m] - e["reported"][m] for m in MEASURES}
            out.append(
                {
                    **{k: (v.isoformat() if isinstance(v, date) else v) for k, v in e["key"].items()},
                    "metered": {m: _text(v) for m, v in e["metered"].items()},
                    "reported": {m: _text(v) for m, v in e["reported"].items()},
                    "difference": {m: _text(v) for m, v in difference.items()},
                    "difference_pct": {m: _pct(difference[m], e["reported"][m]) for m in MEASURES},
                    "provider_currency": e["currency"],
                    "settled": settled,
                }
            )
        return out

    def settled(self, day: date, read_at: datetime | None, now: datetime) -> bool:
        end_of_day = datetime.combine(day + timedelta(days=1), time(), UTC)
        if read_at is None:
            return False
        read = read_at if read_at.tzinfo else read_at.replace(tzinfo=UTC)
        return read - end_of_day >= self._settle and now >= read


def drift_id(workspace_id: str, day: str, provider: str, model: str) -> str:
    return hashlib.sha256(f"provider_drift|{workspace_id}|{day}|{provider}|{model}".encode()).hexdigest()[:32]


class DriftWatch:
    """Every round: the settled (day, provider, model) of the last `days` days whose cost differs from the bill by
    more than `threshold_pct` raise one `provider_drift` alert each, recorded in `data_alerts` after the publish
    (so a restart raises none twice)."""

    def __init__(
        self,
        *,
        client: Client,
        database: str,
        reconciliation: Reconciliation,
        figures: ProviderFigures,
        narrow: Callable[[str], dict[str, Scope]],
        publish: Callable[[DataAlert], Awaitable[object]],
        threshold_pct: Decimal,
        days: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self.db = database
        self._reconciliation = reconciliation
        self._figures = figures
        self._narrow = narrow
        self._publish = publish
        self._threshold = threshold_pct
        self._days = days
        self._now = now

    def _raised(self, workspace_id: str, alert_id: str) -> bool:
        result = self._client.query(
            f"SELECT count() FROM {self.db}.data_alerts "
            "WHERE workspace_id = {ws:String} AND alert_id = {id:String}",
            parameters={"ws": workspace_id, "id": alert_id},
        )
        return bool(result.result_rows[0][0])

    def findings(self, workspace_id: str) -> list[DataAlert]:
        now = self._now()
        end = now.date()
        start = end - timedelta(days=self._days)
        rows = self._reconciliation.rows(workspace_id, start, end, GROUPS, self._narrow(workspace_id), now)
        found = []
        for row in rows:
            metered, billed = Decimal(row["metered"]["cost"]), row["reported"]["cost"]
            if not row["settled"] or billed is None or (row["provider_currency"] or "usd") != "usd":
                continue
            billed = Decimal(billed)
            drifted = metered != 0 if billed == 0 else abs(metered - billed) * 100 / billed > self._threshold
            if drifted:
                found.append(
                    DataAlert(
                        alert_id=drift_id(workspace_id, row["day"], row["provider"], row["model"]),
                        workspace_id=workspace_id,
                        kind="provider_drift",
                        day=row["day"],
                        provider=row["provider"],
                        model=row["model"],
                        metered_cost=format(metered, "f"),
                        provider_cost=format(billed, "f"),
                        difference_pct=row["difference_pct"]["cost"],
                        fired_at=now,
                    )
                )
        return found

    async def run_once(self) -> int:
        """Raises what is new; returns how many alerts it raised."""

        raised = 0
        since = self._now().date() - timedelta(days=self._days)
        for workspace_id in await asyncio.to_thread(self._figures.workspaces, since):
            for alert in await asyncio.to_thread(self.findings, workspace_id):
                if await asyncio.to_thread(self._raised, workspace_id, alert.alert_id):
                    continue
                await self._publish(alert)
                await asyncio.to_thread(
                    self._client.insert,
                    f"{self.db}.data_alerts",
                    [(workspace_id, alert.alert_id, alert.kind)],
                    column_names=["workspace_id", "alert_id", "kind"],
                )
                raised += 1
        return raised
