"""rollup's reads of ClickHouse: what the usage API, the export, the findings and the internal API serve."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from spendstream.rollup.schema import DIMENSIONS, EVENT_COLUMNS, MEASURES

GROUPABLE = ("day", *DIMENSIONS)
# An exported event: the columns of a stored event but its workspace and its batch.
EXPORT_EVENT_COLUMNS = tuple(c for c in EVENT_COLUMNS if c not in ("workspace_id", "batch_id"))


class UsageQueries:
    """Reads of usage_daily, usage_events and workspace_watermarks for one database."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self.db = database

    def models_in_use(self, since: date) -> set[tuple[str, str]]:
        """Every (provider, model) of any workspace with events on a UTC day from `since` on."""
        rows = self._client.query(
            f"SELECT DISTINCT provider, model FROM {self.db}.usage_daily WHERE day >= {{since:Date}}",
            parameters={"since": since},
        ).result_rows
        return {(str(provider), str(model)) for provider, model in rows}

    def usage(
        self,
        workspace_id: str,
        start: date,
        end: date,
        group_by: Iterable[str],
        filters: Mapping[Any, str | Sequence[str]],
    ) -> list[dict[str, Any]]:
        """Totals per group over [start, end] (UTC days, inclusive), from the daily rollup.

        `filters` maps a dimension to the values it may take (several values: any of them)."""
        groups = [g for g in GROUPABLE if g in set(group_by)]
        where, params = self._usage_where(workspace_id, start, end, filters)
        select = [*groups, *(f"sum({m}) AS {m}" for m in MEASURES)]
        sql = f"SELECT {', '.join(select)} FROM {self.db}.usage_daily WHERE {where}" + (
            f" GROUP BY {', '.join(groups)} ORDER BY {', '.join(groups)}" if groups else ""
        )
        return self._usage_rows(self._client.query(sql, parameters=params))

    def usage_top(
        self,
        workspace_id: str,
        start: date,
        end: date,
        group_by: Iterable[str],
        filters: Mapping[Any, str | Sequence[str]],
        top: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """`usage` with the `top` costliest series kept and every other series summed into one row per day.

        A series is one value of the grouping's dimensions other than `day`. The series are ranked by their cost
        over the whole range, ties by their values (ascending, byte order); a row of the rest has `other` true
        and None for each series dimension, a kept row `other` false. Answers the rows (each group's order as
        `usage` has it, the rest last) and how many series the rest sums. Without a series dimension, `usage`'s
        rows with `other` false."""
        groups = [g for g in GROUPABLE if g in set(group_by)]
        series = [g for g in groups if g != "day"]
        if not series:
            return [{**row, "other": False} for row in self.usage(workspace_id, start, end, groups, filters)], 0
        where, params = self._usage_where(workspace_id, start, end, filters)
        params["top"] = top
        # The keys get names of their own inside: an alias equal to a column's name resolves differently across
        # ClickHouse versions.
        keys = [f"k{i}" for i in range(len(series))]
        days = ["day"] if "day" in groups else []
        sums = ", ".join(f"sum({m}) AS {m}" for m in MEASURES)
        inner = (
            f"SELECT {', '.join([*days, *(f'{s} AS {k}' for s, k in zip(series, keys, strict=True))])}, {sums} "
            f"FROM {self.db}.usage_daily WHERE {where} GROUP BY {', '.join([*days, *keys])} HAVING requests != 0"
        )
        # Each group's series cost, then the series' rank (dense: every day of a series has its rank); the outer
        # query keeps the top ranks' keys and sums the rest. The number of series is the highest rank: the highest
        # of each output row's, taken here rather than by a third window pass over every group.
        costed = f"SELECT *, sum(cost_usd) OVER (PARTITION BY {', '.join(keys)}) AS series_cost FROM ({inner})"
        ranked = (
            f"SELECT *, dense_rank() OVER (ORDER BY series_cost DESC, {', '.join(keys)}) AS series_rank FROM ({costed})"
        )
        kept = [f"if(series_rank <= {{top:UInt32}}, {k}, NULL) AS {s}" for s, k in zip(series, keys, strict=True)]
        out = [*days, *series, "other"]
        sql = (
            f"SELECT {', '.join([*days, *kept])}, series_rank > {{top:UInt32}} AS other, {sums}, "
            f"max(series_rank) AS series_count FROM ({ranked}) GROUP BY {', '.join(out)} "
            f"ORDER BY {', '.join(out)}"
        )
        rows = self._usage_rows(self._client.query(sql, parameters=params), keep_empty=True)
        count = max((row.pop("series_count") for row in rows), default=0)
        for row in rows:
            row["other"] = bool(row["other"])
        return rows, max(0, count - top)

    def usage_sets(
        self,
        workspace_id: str,
        start: date,
        end: date,
        sets: Sequence[Sequence[str]],
        filters: Mapping[Any, str | Sequence[str]],
        top: int,
    ) -> list[tuple[list[dict[str, Any]], int]]:
        """`usage_top` for several groupings in one scan (GROUPING SETS): one answer per set, each as `usage_top`
        answers it. Each set names at least one column of GROUPABLE, and no set twice."""
        groupings = [[g for g in GROUPABLE if g in set(keys)] for keys in sets]
        cols = [c for c in GROUPABLE if any(c in ks for ks in groupings)]
        series = [c for c in cols if c != "day"]
        where, params = self._usage_where(workspace_id, start, end, filters)
        params["top"] = top
        sums = ", ".join(f"sum({m}) AS {m}" for m in MEASURES)
        grouping = ", ".join(f"({', '.join(ks)})" for ks in groupings)
        inner = (
            f"SELECT {', '.join(cols)}, {sums}, grouping({', '.join(cols)}) AS gid FROM {self.db}.usage_daily "
            f"WHERE {where} GROUP BY GROUPING SETS ({grouping}) HAVING requests != 0"
        )
        # As in usage_top, per set (gid): a column outside a set holds its type's default on every row of that set,
        # so ranking by every series column ranks each set by its own. The keys get names of their own inside.
        keys = [f"k{i}" for i in range(len(series))]
        renamed = ", ".join(
            [
                "gid",
                *(["day AS d"] if "day" in cols else []),
                *(f"{s} AS {k}" for s, k in zip(series, keys, strict=True)),
            ]
        )
        days = ["d"] if "day" in cols else []
        partition = ", ".join(["gid", *keys])
        costed = (
            f"SELECT {renamed}, {', '.join(MEASURES)}, sum(cost_usd) OVER (PARTITION BY {partition}) AS series_cost "
            f"FROM ({inner})"
        )
        order = ", ".join(["series_cost DESC", *keys])
        ranked = f"SELECT *, dense_rank() OVER (PARTITION BY gid ORDER BY {order}) AS series_rank FROM ({costed})"
        kept = [f"if(series_rank <= {{top:UInt32}}, {k}, NULL) AS {s}" for s, k in zip(series, keys, strict=True)]
        out = ["gid", *days, *series, "other"]
        sql = (
            f"SELECT {', '.join(['gid', *days, *kept])}, series_rank > {{top:UInt32}} AS other, {sums}, "
            f"max(series_rank) AS series_count FROM ({ranked}) GROUP BY {', '.join(out)} ORDER BY {', '.join(out)}"
        )
        result = self._client.query(sql, parameters=params, settings={"force_grouping_standard_compatibility": 1})
        # grouping(c1..cn), as the SQL standard has it: bit i (from the left) is 1 when cols[i] is NOT a key of
        # the row's set.
        ids = [sum(1 << (len(cols) - 1 - i) for i, c in enumerate(cols) if c not in ks) for ks in groupings]
        answers: list[tuple[list[dict[str, Any]], int]] = []
        rows_of: list[list[dict[str, Any]]] = [[] for _ in groupings]
        counts = [0] * len(groupings)
        for values in result.result_rows:
            row = dict(zip(result.column_names, values, strict=True))
            at = ids.index(row["gid"])
            ks = groupings[at]
            out_row = {k: (row["d"].isoformat() if k == "day" else row[k]) for k in ks}
            out_row.update((m, row[m]) for m in MEASURES)
            out_row["other"] = bool(row["other"])
            rows_of[at].append(out_row)
            counts[at] = max(counts[at], int(row["series_count"]))
        for at, ks in enumerate(groupings):
            # A set without a series column is one series (its rows'): nothing to leave out.
            left_out = max(0, counts[at] - top) if any(k != "day" for k in ks) else 0
            answers.append((rows_of[at], left_out))
        return answers

    @staticmethod
    def _usage_where(
        workspace_id: str, start: date, end: date, filters: Mapping[Any, str | Sequence[str]]
    ) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"ws": workspace_id, "start": start, "end": end}
        where = ["workspace_id = {ws:String}", "day >= {start:Date}", "day <= {end:Date}"]
        for i, (column, values) in enumerate(sorted(filters.items())):
            if column not in DIMENSIONS:
                raise ValueError(f"cannot filter on {column}")
            where.append(f"{column} IN {{f{i}:Array(String)}}")
            params[f"f{i}"] = [values] if isinstance(values, str) else list(values)
        return " AND ".join(where), params

    @staticmethod
    def _usage_rows(result: Any, keep_empty: bool = False) -> list[dict[str, Any]]:
        rows = []
        for record in result.result_rows:
            row = dict(zip(result.column_names, record, strict=True))
            # A group whose corrections cancelled out (reconcile) is not a group with usage; a row of the top's
            # answer sums groups that each had some.
            if row["requests"] == 0 and not keep_empty:
                continue
            if "day" in row:
                row["day"] = row["day"].isoformat()
            rows.append(row)
        return rows

    def unknown_models(self, workspace_id: str, start: date, end: date) -> list[dict[str, Any]]:
        """Models of the range that the price table could not price (their events carry cost 'unknown', never a
        silent zero), with their events and tokens."""
        result = self._client.query(
            f"SELECT provider, model, sum(requests), sum(input_tokens), sum(output_tokens) FROM {self.db}.usage_daily "
            "WHERE workspace_id = {ws:String} AND day >= {start:Date} AND day <= {end:Date} "
            "AND cost_source = 'unknown' GROUP BY provider, model HAVING sum(requests) > 0 ORDER BY provider, model",
            parameters={"ws": workspace_id, "start": start, "end": end},
        )
        return [
            {"provider": p, "model": m, "requests": n, "input_tokens": i, "output_tokens": o}
            for p, m, n, i, o in result.result_rows
        ]

    def watermark(self, workspace_id: str) -> datetime | None:
        """Newest ingestion time stored for the workspace: every batch ingested before it is stored.

        ingest keys batches by workspace, so they are consumed in order from one partition (schema.py)."""
        result = self._client.query(
            f"SELECT max(ingested_at), count() FROM {self.db}.workspace_watermarks WHERE workspace_id = {{ws:String}}",
            parameters={"ws": workspace_id},
        )
        newest, count = result.result_rows[0]
        if not count:
            return None
        # Some chDB versions return DateTime64 without its zone; the column is UTC by definition.
        stored: datetime = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
        return stored

    def context(self, workspace_id: str, start: date, end: date) -> tuple[list[dict[str, Any]], datetime | None]:
        """`unknown_models` and `watermark` together, in one round trip: what every usage answer carries beside
        its rows."""
        result = self._client.query(
            "SELECT (SELECT groupArray((provider, model, r, i, o)) FROM (SELECT provider, model, sum(requests) AS r, "
            f"sum(input_tokens) AS i, sum(output_tokens) AS o FROM {self.db}.usage_daily "
            "WHERE workspace_id = {ws:String} AND day >= {start:Date} AND day <= {end:Date} "
            "AND cost_source = 'unknown' GROUP BY provider, model HAVING r > 0 ORDER BY provider, model)), "
            f"(SELECT (max(ingested_at), count()) FROM {self.db}.workspace_watermarks "
            "WHERE workspace_id = {ws:String})",
            parameters={"ws": workspace_id, "start": start, "end": end},
        )
        unknown, (newest, count) = result.result_rows[0]
        # groupArray keeps the subquery's order only when one thread aggregates: sorted here, as ORDER BY would.
        models = [
            {"provider": p, "model": m, "requests": n, "input_tokens": i, "output_tokens": o}
            for p, m, n, i, o in sorted(unknown, key=lambda u: (u[0], u[1]))
        ]
        if not count:
            return models, None
        # Some chDB versions return DateTime64 without its zone; the column is UTC by definition.
        return models, (newest if newest.tzinfo else newest.replace(tzinfo=UTC))

    def events_page(self, workspace_id: str, after: str, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` stored events with event_id > `after`, in event_id order (keyset paging, FINAL)."""
        result = self._client.query(
            f"SELECT {', '.join(EXPORT_EVENT_COLUMNS)} FROM {self.db}.usage_events FINAL "
            "WHERE workspace_id = {ws:String} AND event_id > {after:String} ORDER BY event_id LIMIT {n:UInt32}",
            parameters={"ws": workspace_id, "after": after, "n": limit},
        )
        return [dict(zip(result.column_names, values, strict=True)) for values in result.result_rows]

    def daily_days(self, workspace_id: str) -> list[date]:
        result = self._client.query(
            f"SELECT DISTINCT day FROM {self.db}.usage_daily WHERE workspace_id = {{ws:String}} ORDER BY day",
            parameters={"ws": workspace_id},
        )
        return [r[0] for r in result.result_rows]

    def daily_rows(self, workspace_id: str, day: date) -> list[dict[str, Any]]:
        """The rollup rows of one day, re-aggregated (SummingMergeTree merges eventually)."""
        keys = ", ".join(("day", *DIMENSIONS, "cost_source"))
        result = self._client.query(
            f"SELECT {keys}, {', '.join(f'sum({m}) AS {m}' for m in MEASURES)} FROM {self.db}.usage_daily "
            f"WHERE workspace_id = {{ws:String}} AND day = {{day:Date}} GROUP BY {keys} "
            f"HAVING requests != 0 ORDER BY {keys}",
            parameters={"ws": workspace_id, "day": day},
        )
        return [dict(zip(result.column_names, values, strict=True)) for values in result.result_rows]

    def groups(self, workspace_id: str, start: date, end: date, keys: Sequence[str]) -> list[dict[str, Any]]:
        """Measures summed per `keys` (dimensions) over [start, end], for the waste findings."""
        cols = [k for k in keys if k in DIMENSIONS]
        result = self._client.query(
            f"SELECT {', '.join(cols)}, {', '.join(f'sum({m}) AS {m}' for m in MEASURES)}, "
            "uniqExact(day) AS days "
            f"FROM {self.db}.usage_daily WHERE workspace_id = {{ws:String}} AND day >= {{start:Date}} "
            f"AND day <= {{end:Date}} GROUP BY {', '.join(cols)} HAVING requests > 0 ORDER BY {', '.join(cols)}",
            parameters={"ws": workspace_id, "start": start, "end": end},
        )
        return [dict(zip(result.column_names, values, strict=True)) for values in result.result_rows]

    def group_sets(
        self, workspace_id: str, start: date, end: date, sets: Sequence[Sequence[str]]
    ) -> list[list[dict[str, Any]]]:
        """`groups` for several key sets in one scan (GROUPING SETS): one list per set, each as `groups` answers."""
        keys = [[k for k in keys if k in DIMENSIONS] for keys in sets]
        cols = [c for c in DIMENSIONS if any(c in ks for ks in keys)]
        grouping = ", ".join(f"({', '.join(ks)})" for ks in keys)
        result = self._client.query(
            f"SELECT {', '.join(cols)}, {', '.join(f'sum({m}) AS {m}' for m in MEASURES)}, "
            f"uniqExact(day) AS days, grouping({', '.join(cols)}) AS gid "
            f"FROM {self.db}.usage_daily WHERE workspace_id = {{ws:String}} AND day >= {{start:Date}} "
            f"AND day <= {{end:Date}} GROUP BY GROUPING SETS ({grouping}) HAVING requests > 0",
            parameters={"ws": workspace_id, "start": start, "end": end},
            settings={"force_grouping_standard_compatibility": 1},
        )
        # grouping(c1..cn), as the SQL standard has it: bit i (from the left) is 1 when cols[i] is NOT a key of
        # the row's set.
        ids = [sum(1 << (len(cols) - 1 - i) for i, c in enumerate(cols) if c not in ks) for ks in keys]
        answers: list[list[dict[str, Any]]] = [[] for _ in keys]
        names = result.column_names
        for values in result.result_rows:
            row = dict(zip(names, values, strict=True))
            at = ids.index(row.pop("gid"))
            answers[at].append({k: row[k] for k in (*keys[at], *MEASURES, "days")})
        for at, ks in enumerate(keys):
            # ClickHouse orders Strings by their bytes: UTF-8 bytes order as code points do.
            answers[at].sort(key=lambda r, ks=ks: tuple(r[k] for k in ks))  # type: ignore[misc]
        return answers

    def first_day(self, workspace_id: str, start: date, end: date) -> date | None:
        result = self._client.query(
            f"SELECT min(day), count() FROM {self.db}.usage_daily WHERE workspace_id = {{ws:String}} "
            "AND day >= {start:Date} AND day <= {end:Date}",
            parameters={"ws": workspace_id, "start": start, "end": end},
        )
        first, count = result.result_rows[0]
        return first if count else None

    def revenue_rows(self, workspace_id: str) -> list[dict[str, Any]]:
        """Every current revenue record of the workspace (corrections applied), for the export."""
        result = self._client.query(
            "SELECT source, source_id, customer_id, customer_plan, amount, currency, period_start, period_end "
            f"FROM {self.db}.revenue FINAL WHERE workspace_id = {{ws:String}} ORDER BY source, source_id",
            parameters={"ws": workspace_id},
        )
        return [dict(zip(result.column_names, values, strict=True)) for values in result.result_rows]
