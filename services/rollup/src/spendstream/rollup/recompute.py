"""Re-pricing stored costs (issue 22, item 4): every computed (or unpriced) cost of a day range, raw events and
daily rollup, under the prices in force now; reported costs never change.

How, and why so:
  * Raw rows are re-priced in place, one `ALTER TABLE usage_events UPDATE` mutation per month partition over
    the job's pending (workspace, day) pairs, waited for synchronously (mutations_sync). A mutation keeps each
    row's key and version (ingested_at), so the ReplacingMergeTree holds one row per event as before and no
    old row can win a later merge; and it feeds no materialized view, so the rollup is not counted twice (a
    re-insert with a higher version would fire usage_daily_mv and move the freshness watermark). Its expression
    is the writer's price (repricing.py), so the result is the writer's to the nano-dollar.
  * Only rows whose cost, source or price_ref would change are touched (the WHERE repeats the expression): a
    second run finds nothing to do and writes nothing. Prices are the price book's quotes (a dated version, a
    tenant's percent of it, or a tenant's fixed rate) for each row's workspace, UTC day, model and service tier.
  * Before the mutation, a 'repriced' row per (job, workspace, day) names the models it changes; then the
    rollup of those models over the partition's days is made equal to the deduplicated raw rows (the
    reconciler's drift, inserted server-side): the difference is inserted, so a group that moved from
    'unknown' to 'computed' leaves one key and joins the other. The periodic reconcile computes the same thing,
    so the two never disagree whichever runs first. A 'settled' row per (job, workspace, day) ends the step.
  * The cursor is durable (price_recompute_days): a rerun of the same request under the same prices resumes the
    unfinished job and skips the settled days; a partition killed between its mutation and its rollup finds no
    row left to change and settles the models its 'repriced' rows name (both steps are idempotent).
  * Events that arrive meanwhile: in rollup the writer prices them with the same book, and every step holds the
    writer lock; and a job ends with a check of its whole range that re-prices any row still differing (written
    by a writer with other prices, or on a day the plan did not see), for up to MAX_ROUNDS rounds.
  * Audited: the job row (who, range, prices fingerprint, state, result) and a structured log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol

from clickhouse_connect.driver.client import Client

from spendstream.common.pricebook import PriceBook, Quote
from spendstream.rollup.reconcile import CORRECTION_COLUMNS, Reconciler
from spendstream.rollup.repricing import literal, priced_sql, quote_sql

log = logging.getLogger(__name__)

# A check round that still finds rows to re-price after this many rounds means a writer keeps storing other
# prices: the job reports it instead of chasing it forever.
MAX_ROUNDS = 3
_SEP = "\x1f"  # between the parts of a price key; no id or model name contains it
State = Literal["running", "done", "failed"]


class Pricing(Protocol):
    """The prices in force now, for an event of `workspace_id` on `day`: a quote, or None when unpriced."""

    def quote(self, workspace_id: str, day: date, provider: str, model: str) -> Quote | None: ...


class BookPricing:
    """A price book's quotes (dated versions, tenant rates), as the writer prices with them (PriceBook.price)."""

    def __init__(self, book: PriceBook) -> None:
        self.book = book

    def quote(self, workspace_id: str, day: date, provider: str, model: str) -> Quote | None:
        return self.book.quote(workspace_id, provider, model, day)


@dataclass(frozen=True, slots=True)
class Request:
    """What to re-price: [start, end] (UTC days), one workspace or every one (None), and who asked."""

    start: date
    end: date
    workspace_id: str | None
    requested_by: str


@dataclass(slots=True)
class Progress:
    job_id: str
    state: State
    workspace_id: str | None
    start: date
    end: date
    requested_by: str
    days_total: int = 0
    days_done: int = 0
    events_total: int = 0
    events_done: int = 0
    changed: int = 0  # raw rows whose cost or source changed
    rollup_groups: int = 0  # rollup groups corrected
    rounds: int = 0
    resumed: bool = False
    error: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None

    def jsonable(self) -> dict[str, Any]:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, date | datetime):
                out[k] = v.isoformat()
        return out


@dataclass(frozen=True, slots=True)
class Unit:
    workspace_id: str
    day: date
    events: int


@dataclass(frozen=True, slots=True)
class Plan:
    job_id: str
    fingerprint: str
    units: list[Unit]  # every (workspace, day) with computed or unknown costs in range
    done: set[tuple[str, date]]  # the units this job already settled (a resumed job)
    resumed: bool

    def pending_by_partition(self) -> dict[int, list[Unit]]:
        """The units left to do, by month partition (usage_events' PARTITION BY toYYYYMM(ts))."""
        out: dict[int, list[Unit]] = defaultdict(list)
        for unit in self.units:
            if (unit.workspace_id, unit.day) not in self.done:
                out[unit.day.year * 100 + unit.day.month].append(unit)
        return dict(sorted(out.items()))


class Repricer:
    """Re-prices a Request over ClickHouse; each public step is short and meant to run under the writer lock."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self.db = database
        self._reconciler = Reconciler(client, database)

    # --- planning -------------------------------------------------------------------------------------------

    def _scope(self, request: Request) -> tuple[str, dict[str, Any]]:
        where = (
            "ts >= toDateTime64({start:Date}, 3, 'UTC') AND ts < toDateTime64({end:Date}, 3, 'UTC') + INTERVAL 1 DAY"
        )
        where += " AND cost_source != 'reported'"
        params: dict[str, Any] = {"start": request.start, "end": request.end}
        if request.workspace_id is not None:
            where += " AND workspace_id = {ws:String}"
            params["ws"] = request.workspace_id
        return where, params

    def plan(self, request: Request, pricing: Pricing) -> Plan:
        """The units of `request` and the job that re-prices them: a new one, or the unfinished job of the same
        request under the same prices (resumed, its settled days skipped)."""
        where, params = self._scope(request)
        rows = self._client.query(
            f"SELECT workspace_id, toDate(ts) AS day, provider, model, count() FROM {self.db}.usage_events "
            f"WHERE {where} GROUP BY workspace_id, day, provider, model ORDER BY workspace_id, day, provider, model",
            parameters=params,
        ).result_rows
        counts: dict[tuple[str, date], int] = defaultdict(int)
        digest = hashlib.sha256()
        for ws, day, provider, model, n in rows:
            counts[(ws, day)] += int(n)
            digest.update(repr((ws, day, provider, model, pricing.quote(ws, day, provider, model))).encode())
        fingerprint = digest.hexdigest()[:32]
        units = [Unit(ws, day, n) for (ws, day), n in sorted(counts.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
        job_id = self._unfinished(request, fingerprint)
        resumed = job_id is not None
        if job_id is None:
            job_id = uuid.uuid4().hex
        done = self._done(job_id) if resumed else set()
        return Plan(job_id, fingerprint, units, done, resumed)

    def _unfinished(self, request: Request, fingerprint: str) -> str | None:
        rows = self._client.query(
            f"SELECT job_id FROM {self.db}.price_recompute_jobs FINAL WHERE workspace_id = {{ws:String}} "
            "AND start = {start:Date} AND end = {end:Date} AND prices = {fp:String} AND state != 'done' "
            "ORDER BY created_at DESC LIMIT 1",
            parameters={
                "ws": request.workspace_id or "",
                "start": request.start,
                "end": request.end,
                "fp": fingerprint,
            },
        ).result_rows
        return str(rows[0][0]) if rows else None

    def _done(self, job_id: str) -> set[tuple[str, date]]:
        rows = self._client.query(
            f"SELECT workspace_id, day FROM {self.db}.price_recompute_days WHERE job_id = {{job:String}} "
            "AND step = 'settled'",
            parameters={"job": job_id},
        ).result_rows
        return {(str(ws), day) for ws, day in rows}

    def _mark(self, job_id: str, units: Sequence[Unit], step: str, models: Sequence[tuple[str, str]] = ()) -> None:
        self._client.insert(
            f"{self.db}.price_recompute_days",
            [[job_id, u.workspace_id, u.day, step, u.events, list(models)] for u in units],
            column_names=("job_id", "workspace_id", "day", "step", "events", "models"),
            settings={"insert_deduplicate": 0},
        )

    def repriced_models(self, job_id: str, units: Sequence[Unit]) -> list[tuple[str, str]]:
        """The models this job re-priced (or set out to) in `units`' raw rows: what their rollup must settle."""
        rows = self._client.query(
            f"SELECT DISTINCT arrayJoin(models) FROM {self.db}.price_recompute_days WHERE job_id = {{job:String}} "
            f"AND step = 'repriced' AND {self._unit_condition(units, 'day')}",
            parameters={"job": job_id},
        ).result_rows
        return sorted((str(m[0][0]), str(m[0][1])) for m in rows)

    # --- the job record (audit) -----------------------------------------------------------------------------

    def record(self, progress: Progress, fingerprint: str) -> None:
        """The job's row in price_recompute_jobs; the latest write wins (ReplacingMergeTree(updated_at))."""
        now = datetime.now(UTC)
        self._client.insert(
            f"{self.db}.price_recompute_jobs",
            [
                [
                    progress.job_id,
                    progress.workspace_id or "",
                    progress.start,
                    progress.end,
                    fingerprint,
                    progress.requested_by,
                    progress.state,
                    json.dumps(progress.jsonable(), sort_keys=True),
                    progress.started_at,
                    now,
                ]
            ],
            column_names=(
                "job_id",
                "workspace_id",
                "start",
                "end",
                "prices",
                "requested_by",
                "state",
                "result",
                "created_at",
                "updated_at",
            ),
            settings={"insert_deduplicate": 0},
        )

    def job(self, job_id: str) -> dict[str, Any] | None:
        """The latest record of a job: its progress as last written, and its state."""
        rows = self._client.query(
            f"SELECT result FROM {self.db}.price_recompute_jobs FINAL WHERE job_id = {{job:String}}",
            parameters={"job": job_id},
        ).result_rows
        return dict(json.loads(rows[0][0])) if rows else None

    def unfinished_jobs(self) -> list[dict[str, Any]]:
        """Jobs recorded as running (a process died under them): what a restarted service resumes."""
        rows = self._client.query(
            f"SELECT result FROM {self.db}.price_recompute_jobs FINAL WHERE state = 'running' ORDER BY created_at"
        ).result_rows
        return [dict(json.loads(r[0])) for r in rows]

    # --- the steps ------------------------------------------------------------------------------------------

    def _unit_condition(self, units: Sequence[Unit], day_sql: str = "toDate(ts)") -> str:
        pairs = sorted({(u.workspace_id, u.day) for u in units})
        tuples = ", ".join(f"({literal(ws)}, toDate('{day.isoformat()}'))" for ws, day in pairs)
        return f"(workspace_id, {day_sql}) IN ({tuples})"

    def _expressions(self, condition: str, partition: int, pricing: Pricing) -> tuple[str, str, str]:
        """(cost_usd, cost_source, price_ref) under `pricing` for the rows of `condition`. Rows are keyed by
        (provider, model, service tier) when no workspace or day is priced differently, else by all five; keys
        whose cost expression is the same share one group."""
        keys = self._client.query(
            f"SELECT DISTINCT workspace_id, toDate(ts), provider, model, service_tier FROM {self.db}.usage_events "
            f"WHERE _partition_id = '{partition}' AND {condition} AND cost_source != 'reported'"
        ).result_rows
        quotes: dict[tuple[str, date, str, str, str], tuple[str, str] | None] = {}
        memo: dict[tuple[int, int, str], str] = {}
        for ws, d, p, m, tier in keys:
            row = (str(ws), d, str(p), str(m), str(tier))
            quote = pricing.quote(str(ws), d, str(p), str(m))
            if quote is None:
                quotes[row] = None
                continue
            memo_key = (id(quote.price), id(quote.rate), str(tier))
            sql = memo.get(memo_key)
            if sql is None:
                sql = memo.setdefault(memo_key, quote_sql(quote, str(tier)))
            quotes[row] = (sql, quote.ref)
        by_model: dict[tuple[str, str, str], set[tuple[str, str] | None]] = defaultdict(set)
        for (_, _, p, m, tier), priced in quotes.items():
            by_model[(p, m, tier)].add(priced)
        if all(len(found) == 1 for found in by_model.values()):
            key_sql = "concat(provider, char(31), model, char(31), service_tier)"
            keyed = {_SEP.join(k): next(iter(found)) for k, found in by_model.items()}
        else:
            key_sql = (
                "concat(workspace_id, char(31), toString(toDate(ts)), char(31), provider, char(31), model, "
                "char(31), service_tier)"
            )
            keyed = {_SEP.join((ws, d.isoformat(), p, m, t)): q for (ws, d, p, m, t), q in quotes.items()}
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for key, priced in keyed.items():
            if priced is not None:
                groups[priced].append(key)
        return priced_sql(key_sql, [(k, sql, ref) for (sql, ref), k in groups.items()])

    def reprice_partition(self, job_id: str, partition: int, units: Sequence[Unit], pricing: Pricing) -> int:
        """Re-price the raw rows of `units` (all in month `partition`) whose cost or source differs from
        `pricing`'s; returns how many rows changed. Synchronous: the rows are re-priced when it returns. The
        models it changes are recorded first ('repriced'), so a crash before the rollup is settled leaves the
        settling step knowing what to settle."""
        condition = self._unit_condition(units)
        cost, source, ref = self._expressions(condition, partition, pricing)
        differs = (
            f"{condition} AND cost_source != 'reported' AND (cost_usd != {cost} OR toString(cost_source) != {source} "
            f"OR price_ref != {ref})"
        )
        # The query text holds a price key per model in use, a few hundred bytes each.
        big = {
            "max_query_size": 16 * 1024 * 1024,
            "max_ast_elements": 5_000_000,
            "max_expanded_ast_elements": 5_000_000,
        }
        changing = self._client.query(
            f"SELECT provider, model, count() FROM {self.db}.usage_events WHERE _partition_id = '{partition}' "
            f"AND {differs} GROUP BY provider, model",
            settings=big,
        ).result_rows
        if not changing:
            return 0
        self._mark(job_id, units, "repriced", sorted((str(p), str(m)) for p, m, _ in changing))
        self._client.command(
            f"ALTER TABLE {self.db}.usage_events UPDATE cost_usd = {cost}, cost_source = {source}, price_ref = {ref} "
            f"IN PARTITION ID '{partition}' WHERE {differs}",
            settings={**big, "mutations_sync": 2},
        )
        return sum(int(n) for _, _, n in changing)

    def settle(self, job_id: str, units: Sequence[Unit], workspace_id: str | None) -> int:
        """Make the rollup of the models this job re-priced in `units` (one month partition) equal their raw
        rows, then mark the units done; returns the rollup groups corrected. One drift query for the partition's
        days (the raw table is ordered by (workspace, event): a query per day would read the whole partition
        once per day), narrowed to the re-priced models; nothing when the job changed no row there."""
        models = self.repriced_models(job_id, units)
        fixed = 0
        if models:
            workspaces = None if workspace_id is None else [workspace_id]
            days = [u.day for u in units]
            sql, parameters = self._reconciler.drift_sql(min(days), max(days), workspaces, models, ordered=False)
            # The corrections go from ClickHouse to ClickHouse (a month has hundreds of thousands of groups, slow
            # to carry through Python), through a scratch table of this job that also counts them.
            scratch = f"{self.db}.price_recompute_drift_{job_id}"
            self._client.command(f"DROP TABLE IF EXISTS {scratch}")
            self._client.command(f"CREATE TABLE {scratch} ENGINE = Memory AS {sql}", parameters=parameters)
            fixed = int(self._client.query(f"SELECT count() FROM {scratch}").result_rows[0][0])
            if fixed:
                self._client.command(
                    f"INSERT INTO {self.db}.usage_daily ({', '.join(CORRECTION_COLUMNS)}) SELECT * FROM {scratch}",
                    settings={"insert_deduplicate": 0},  # a correction may equal an earlier one; it must still apply
                )
            self._client.command(f"DROP TABLE {scratch}")
        self._mark(job_id, units, "settled")
        return fixed

    def still_differing(self, request: Request, pricing: Pricing) -> list[Unit]:
        """The (workspace, day) units of `request` with any row whose cost differs from `pricing`'s."""
        where, params = self._scope(request)
        rows = self._client.query(
            f"SELECT _partition_id, groupUniqArray((workspace_id, toDate(ts))) FROM {self.db}.usage_events "
            f"WHERE {where} GROUP BY _partition_id",
            parameters=params,
        ).result_rows
        found: list[Unit] = []
        for partition, pairs in rows:
            units = [Unit(str(ws), d, 0) for ws, d in pairs]
            condition = self._unit_condition(units)
            cost, source, ref = self._expressions(condition, int(partition), pricing)
            differing = self._client.query(
                f"SELECT DISTINCT workspace_id, toDate(ts) FROM {self.db}.usage_events WHERE _partition_id = "
                f"'{partition}' AND {condition} AND cost_source != 'reported' AND (cost_usd != {cost} "
                f"OR toString(cost_source) != {source} OR price_ref != {ref})",
                settings={"max_query_size": 16 * 1024 * 1024},
            ).result_rows
            found += [Unit(str(ws), d, 0) for ws, d in differing]
        return found


Step = Callable[[], None]


def steps(repricer: Repricer, request: Request, pricing: Pricing, progress: Progress, plan: Plan) -> Iterator[Step]:
    """The job as short steps (each one mutation or one partition's rollup), for a driver to run in order: the CLI
    runs them straight, the service under its writer lock so no insert interleaves. `progress` is updated after
    each; the final steps check the whole range again (see the module docstring)."""
    progress.days_total = len({u.day for u in plan.units})
    progress.events_total = sum(u.events for u in plan.units)
    done_days = {
        d
        for d in {u.day for u in plan.units}
        if all((u.workspace_id, u.day) in plan.done for u in plan.units if u.day == d)
    }
    progress.days_done = len(done_days)
    progress.events_done = sum(u.events for u in plan.units if (u.workspace_id, u.day) in plan.done)
    progress.resumed = plan.resumed
    rounds: list[dict[int, list[Unit]]] = [plan.pending_by_partition()]
    while rounds:
        by_partition = rounds.pop()
        progress.rounds += 1
        for partition, units in by_partition.items():

            def reprice(partition: int = partition, units: list[Unit] = units) -> None:
                progress.changed += repricer.reprice_partition(plan.job_id, partition, units, pricing)

            yield reprice

            def settle(units: list[Unit] = units) -> None:
                progress.rollup_groups += repricer.settle(plan.job_id, units, request.workspace_id)
                progress.events_done += sum(u.events for u in units)
                if progress.rounds == 1:
                    progress.days_done += len({u.day for u in units})

            yield settle
        left: list[Unit] = []

        def check(left: list[Unit] = left) -> None:
            left.extend(repricer.still_differing(request, pricing))

        yield check
        if left:
            if progress.rounds >= MAX_ROUNDS:
                raise RuntimeError(
                    f"{len(left)} days still differ after {MAX_ROUNDS} rounds: a writer stores other prices"
                )
            again: dict[int, list[Unit]] = defaultdict(list)
            for unit in left:
                again[unit.day.year * 100 + unit.day.month].append(unit)
            rounds.append(dict(sorted(again.items())))


def audit(progress: Progress) -> None:
    """The structured audit line of a finished (or failed) job; its record is the job's row."""
    log.info("audit: prices recompute " + progress.state, extra={"audit": "prices.recompute", **progress.jsonable()})


def run(
    repricer: Repricer,
    request: Request,
    pricing: Pricing,
    on_progress: Callable[[Progress], None] = lambda _: None,
) -> Progress:
    """Run a job to the end in this thread (the CLI's direct mode: no other writer in this process)."""
    plan = repricer.plan(request, pricing)
    progress = Progress(plan.job_id, "running", request.workspace_id, request.start, request.end, request.requested_by)
    repricer.record(progress, plan.fingerprint)
    try:
        for step in steps(repricer, request, pricing, progress, plan):
            step()
            on_progress(progress)
    except Exception as exc:
        progress.state, progress.error = "failed", type(exc).__name__ + ": " + str(exc)[:300]
        progress.finished_at = datetime.now(UTC)
        repricer.record(progress, plan.fingerprint)
        audit(progress)
        raise
    progress.state, progress.finished_at = "done", datetime.now(UTC)
    repricer.record(progress, plan.fingerprint)
    audit(progress)
    return progress
