"""Re-pricing (issue 22, item 4): a model's price changes for a past week; after recompute the week's computed
costs, raw and rolled up, are the new prices' to the nano-dollar, reported ones untouched, other weeks
untouched; a second run changes nothing; a SIGKILLed run and its rerun give the same result; events arriving
during a job are priced right either way."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from spendstream.common.events import sealed_events
from spendstream.common.kafka import make_broker
from spendstream.common.price_replica import PricePublisher
from spendstream.common.pricebook import PriceBook, PriceVersion, TenantRate, VersionRecord, digest_of, version_id
from spendstream.common.prices import PriceTable
from spendstream.common.settings import BaseServiceSettings
from spendstream.rollup import recompute
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.queries import UsageQueries
from spendstream.rollup.recompute import BookPricing, Repricer, Request
from spendstream.rollup.schema import migrate
from spendstream.rollup.settings import RollupSettings
from spendstream.rollup.writes import ClickHouseWriter, StoredBatch
from tests.rollup.kafka import lag, publisher
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration

OLD = {
    "gpt-4o-mini": {
        "input_cost_per_token": 1.5e-7,
        "output_cost_per_token": 6e-7,
        "cache_read_input_token_cost": 7.5e-8,
        "input_cost_per_token_priority": 2.5e-7,
        "output_cost_per_token_priority": 1e-6,
    },
    "claude-sonnet-4": {
        "input_cost_per_token": 3e-6,
        "output_cost_per_token": 1.5e-5,
        "cache_read_input_token_cost": 3e-7,
        "cache_creation_input_token_cost": 3.75e-6,
        "cache_creation_input_token_cost_above_1hr": 6e-6,
        "input_cost_per_token_above_200k_tokens": 6e-6,
        "output_cost_per_token_above_200k_tokens": 2.25e-5,
    },
}
# gpt-4o-mini's price corrected (standard, priority and batch rates), and a model the old table did not know.
NEW = {
    **OLD,
    "gpt-4o-mini": {
        "input_cost_per_token": 1.65e-7,
        "output_cost_per_token": 6.6e-7,
        "cache_read_input_token_cost": 8.25e-8,
        "input_cost_per_token_priority": 2.75e-7,
        "output_cost_per_token_priority": 1.1e-6,
        "input_cost_per_token_batches": 8.25e-8,
        "output_cost_per_token_batches": 3.3e-7,
    },
    "brand-new-1": {"input_cost_per_token": 1.1e-6, "output_cost_per_token": 4.4e-6},
}
WEEK = (date(2026, 10, 28), date(2026, 11, 3))  # a past week across a month boundary (two partitions)
OTHER_WEEKS = ((date(2026, 10, 21), date(2026, 10, 27)), (date(2026, 11, 4), date(2026, 11, 10)))
MODELS = ("gpt-4o-mini", "claude-sonnet-4", "brand-new-1")
CREATED = datetime(2026, 11, 20, tzinfo=UTC)


def _version(table: dict[str, Any], day: date) -> VersionRecord:
    raw = json.dumps(table).encode()
    digest = digest_of(raw)
    meta = PriceVersion(
        version_id=version_id(day, digest),
        effective_from=day,
        created_at=CREATED,
        source="file:test.json",
        digest=digest,
        models=len(table),
        status="active",
    )
    return VersionRecord(meta, raw)


def _rate(rate_id: str, day: date, **fields: Any) -> TenantRate:
    return TenantRate(
        rate_id=rate_id, workspace_id="ws1", effective_from=day, created_at=CREATED, created_by="t", **fields
    )


def stale() -> PriceBook:
    """The prices the events were stored with."""
    return PriceBook(PriceTable(OLD))


def corrected() -> PriceBook:
    """The prices in force after the correction of the past week: a version for the week (the old table again
    from the day after), a discount on claude and a fixed rate for brand-new models, both ws1's from the week."""
    book = stale()
    book.put_version(_version(NEW, WEEK[0]))
    book.put_version(_version(OLD, WEEK[1] + timedelta(days=1)))
    book.put_rate(_rate("claude-deal", WEEK[0], provider="anthropic", model="claude-*", kind="discount", percent=15))
    book.put_rate(
        _rate("fixed-new", WEEK[0], model="brand-new-*", kind="fixed", input=Decimal("9e-7"), output=Decimal("3.3e-6"))
    )
    return book


def _events(rng: random.Random, day: date, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        model = MODELS[i % len(MODELS)]
        input_tokens = rng.choice((rng.randint(1, 5000), rng.randint(190_000, 260_000)))
        output_tokens = rng.randint(0, 4000)
        cached = rng.randint(0, input_tokens)
        writes = rng.choice((None, rng.randint(0, input_tokens - cached)))
        event = usage_event(
            model=model,
            provider="anthropic" if model.startswith("claude") else "openai",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached,
            cache_creation_input_tokens=writes,
            cache_creation_1h_input_tokens=None if writes is None else rng.randint(0, writes),
            service_tier=rng.choice((None, None, "priority", "batch", "flex")),
            timestamp=datetime(
                day.year, day.month, day.day, rng.randint(0, 23), rng.randint(0, 59), tzinfo=UTC
            ).isoformat(),
            tags={"feature": rng.choice(("chat", "search")), "customer_id": f"c{rng.randint(1, 3)}"},
        )
        # A quarter of the calls report their own cost: those are never re-priced.
        if i % 4 == 3:
            event["cost_usd"] = round(rng.uniform(0.001, 2.0), 6)
        else:
            event.pop("cost_usd")
        out.append(event)
    return out


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@dataclass
class Store:
    client: Client
    database: str
    queries: UsageQueries

    def events(self, workspace_id: str) -> dict[str, tuple[Decimal, str, str]]:
        rows = self.client.query(
            f"SELECT event_id, cost_usd, cost_source, price_ref FROM {self.database}.usage_events FINAL "
            "WHERE workspace_id = {ws:String}",
            parameters={"ws": workspace_id},
        ).result_rows
        return {str(e): (Decimal(c), str(s), str(r)) for e, c, s, r in rows}

    def usage(self, workspace_id: str, start: date, end: date) -> dict[tuple[Any, ...], tuple[int, Decimal]]:
        """What /v1/usage answers for the range, by day and model, and the unpriced models it lists."""
        rows = self.queries.usage(workspace_id, start, end, ["day", "model"], {})
        unknown = self.queries.unknown_models(workspace_id, start, end)
        return {
            **{(r["day"], r["model"]): (r["requests"], r["cost_usd"]) for r in rows},
            **{("unknown", u["model"]): (u["requests"], Decimal(0)) for u in unknown},
        }

    def rollup(self, workspace_id: str) -> dict[tuple[Any, ...], tuple[int, Decimal]]:
        """The daily rollup's groups with usage, by every key."""
        rows = self.client.query(
            f"SELECT day, provider, model, feature, customer_id, cost_source, sum(requests), sum(cost_usd) "
            f"FROM {self.database}.usage_daily WHERE workspace_id = {{ws:String}} "
            "GROUP BY ALL HAVING sum(requests) != 0",
            parameters={"ws": workspace_id},
        ).result_rows
        return {tuple(r[:6]): (int(r[6]), Decimal(r[7])) for r in rows}

    def mutations(self) -> int:
        return int(
            self.client.query(
                "SELECT count() FROM system.mutations WHERE database = {db:String} AND table = 'usage_events'",
                parameters={"db": self.database},
            ).result_rows[0][0]
        )


def _expected(
    events: list[dict[str, Any]], book: PriceBook, workspace_id: str = "ws1"
) -> tuple[dict[str, tuple[Decimal, str, str]], dict[tuple[Any, ...], tuple[int, Decimal]]]:
    """Per event (cost, source, ref) and per (day, model) (requests, cost): what the writer stores for `events`
    under `book`."""
    per_event: dict[str, tuple[Decimal, str, str]] = {}
    usage: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for event in sealed_events(events):
        cost, ref = book.cost(workspace_id, event)
        if event.cost_usd is not None:
            cost, source = Decimal(str(event.cost_usd)).quantize(Decimal("1e-9")), "reported"
        elif cost is not None:
            source = "computed"
        else:
            cost, source = Decimal(0), "unknown"
        per_event[event.event_id] = (cost, source, ref)
        group = usage[(event.timestamp.astimezone(UTC).date().isoformat(), event.model)]
        group[0] += 1
        group[1] += cost
        if source == "unknown":
            usage[("unknown", event.model)][0] += 1
    return per_event, {k: (n, c) for k, (n, c) in usage.items()}


def _store(iso: Isolation) -> Store:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    return Store(client, iso.database, UsageQueries(client, iso.database))


def _write(store: Store, workspace_id: str, events: list[dict[str, Any]], book: PriceBook) -> None:
    writer = ClickHouseWriter(store.client, store.database, book)
    batch = StoredBatch.of(workspace_id, uuid.uuid4().hex, datetime.now(UTC), sealed_events(events))
    writer.insert_new([batch], writer.encode([batch]))


def _history(seed: int, per_day: int) -> dict[date, list[dict[str, Any]]]:
    rng = random.Random(seed)
    first, last = OTHER_WEEKS[0][0], OTHER_WEEKS[1][1]
    return {day: _events(rng, day, per_day) for day in _days(first, last)}


def _in(history: dict[date, list[dict[str, Any]]], start: date, end: date) -> list[dict[str, Any]]:
    return [e for day, events in history.items() if start <= day <= end for e in events]


def test_recompute_reprices_the_week_exactly_leaves_reported_and_other_weeks_and_a_second_run_changes_nothing(
    iso: Isolation,
) -> None:
    store = _store(iso)
    old, new = stale(), corrected()
    history = _history(22, 30)
    for events in history.values():
        _write(store, "ws1", events, old)
    _write(store, "ws2", _in(history, *WEEK), old)  # another workspace, the same calls: not asked, not touched
    before_ws2 = store.events("ws2")

    progress = recompute.run(Repricer(store.client, store.database), Request(*WEEK, "ws1", "test"), BookPricing(new))

    week_events, week_usage = _expected(_in(history, *WEEK), new)
    was, _ = _expected(_in(history, *WEEK), old)
    assert progress.state == "done" and progress.days_done == progress.days_total == 7
    # Every computed row changed: gpt-4o-mini's price (the week's version), claude's (the discount), and the
    # formerly unpriced brand-new-1 is priced (the fixed rate); so did their refs.
    assert progress.changed == sum(1 for e, now in week_events.items() if now != was[e]) > 0
    stored = store.events("ws1")
    assert {e: stored[e] for e in week_events} == week_events
    assert store.usage("ws1", *WEEK) == week_usage
    assert not [k for k in week_usage if k[0] == "unknown"]  # brand-new-1 is priced now
    refs = {ref for _, source, ref in week_events.values() if source == "computed"}
    assert {r.split("/")[0].split(":")[0] for r in refs} == {"table", "rate"} and len(refs) == 3
    for other in OTHER_WEEKS:
        other_events, other_usage = _expected(_in(history, *other), old)
        assert {e: stored[e] for e in other_events} == other_events
        assert store.usage("ws1", *other) == other_usage
    assert store.events("ws2") == before_ws2

    rollup, mutations = store.rollup("ws1"), store.mutations()
    again = recompute.run(Repricer(store.client, store.database), Request(*WEEK, "ws1", "test"), BookPricing(new))
    assert again.state == "done" and again.changed == 0 and again.rollup_groups == 0
    assert store.mutations() == mutations  # not one part rewritten
    assert store.events("ws1") == stored
    assert store.rollup("ws1") == rollup


def _python(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


async def test_a_recompute_killed_mid_way_and_rerun_gives_the_result_of_an_uninterrupted_one(
    iso: Isolation, tmp_path: Path
) -> None:
    # Its own chDB directory, worked from other processes: the recompute is a real `spendstream` process.
    url, db = f"chdb://{tmp_path / 'clickhouse'}", "repricing"
    history = _history(23, 12)
    events_file, old_file = tmp_path / "events.json", tmp_path / "old.json"
    events_file.write_text(json.dumps([["ws1", e] for events in history.values() for e in events]))
    old_file.write_text(json.dumps(OLD))
    _python("-m", "tests.rollup.recompute_store", "seed", url, db, str(events_file), str(old_file))
    # The prices in force now: the bundled table, and a version of NEW's from October (`prices refresh` adds one
    # so), on the isolated pricing topics the command replays.
    version = _version(NEW, date(2026, 10, 1))
    broker = make_broker(iso.settings(BaseServiceSettings), "tests")
    await broker.connect()
    try:
        await PricePublisher(broker, iso.prefix).version(version)
    finally:
        await broker.stop()
    now = PriceBook()
    now.put_version(version)
    env = {**os.environ, **iso.env(), "SPENDSTREAM_CLICKHOUSE_URL": url, "SPENDSTREAM_CLICKHOUSE_DATABASE": db}
    args = ["prices", "recompute", "--direct", "--from", WEEK[0].isoformat(), "--to", WEEK[1].isoformat()]
    args += ["--workspace", "ws1", "--progress", "lines"]

    slow = subprocess.Popen(
        [sys.executable, "-m", "tests.rollup.recompute_store", "slow", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert slow.stderr is not None
    october_done = False
    for line in slow.stderr:
        said = json.loads(line) if line.startswith("{") else {}
        october_done = october_done or said.get("progress", {}).get("days_done") == 4
        if october_done and "settling" in said:
            # November's raw rows are re-priced, its rollup not yet settled: killed right there.
            slow.send_signal(signal.SIGKILL)
            break
    assert slow.wait(timeout=60) == -signal.SIGKILL
    slow.stdout.close()  # type: ignore[union-attr]
    slow.stderr.close()

    def dump() -> dict[str, Any]:
        out = _python("-m", "tests.rollup.recompute_store", "dump", url, db, "ws1", "2026-10-01", "2026-11-30")
        return dict(json.loads(out))

    killed = dump()
    assert killed["days_done"] == 4 and list(killed["jobs"].values()) == ["running"]
    november = _in(history, date(2026, 11, 1), WEEK[1])
    new_costs, _ = _expected(november, now)
    _, old_usage = _expected(november, stale())
    assert {e: (Decimal(c), s, r) for e, (c, s, r) in killed["events"].items() if e in new_costs} == new_costs
    assert {k: v for k, v in killed["usage"].items() if k[:10] in {"2026-11-01", "2026-11-02", "2026-11-03"}} == {
        f"{k[0]}|{k[1]}": [n, str(c)] for k, (n, c) in old_usage.items() if k[0] != "unknown"
    }

    rerun = subprocess.run(
        [sys.executable, "-m", "spendstream.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    result = json.loads(rerun.stdout)
    assert result["state"] == "done" and result["resumed"] and result["job_id"] in killed["jobs"]
    final = dump()
    assert final["jobs"] == {result["job_id"]: "done"} and final["days_done"] == 7

    # What an uninterrupted run gives: the writer's prices, new for the week and old elsewhere.
    expected: dict[str, tuple[Decimal, str, str]] = {}
    usage: dict[str, tuple[int, Decimal]] = {}
    for start, end, book in ((*WEEK, now), *((*w, stale()) for w in OTHER_WEEKS)):
        per_event, per_day = _expected(_in(history, start, end), book)
        expected |= per_event
        usage |= {f"{k[0]}|{k[1]}": (n, c) for k, (n, c) in per_day.items() if k[0] != "unknown"}
    assert {e: (Decimal(c), s, r) for e, (c, s, r) in final["events"].items()} == expected
    assert {k: (n, Decimal(c)) for k, (n, c) in final["usage"].items()} == usage


def test_events_stored_while_a_job_runs_end_priced_by_the_new_prices_raw_and_rolled_up(iso: Isolation) -> None:
    # Writers store more of the week's events while the job runs (from its first step until its final check):
    # half with the new prices (the service hands them to its writer before a job starts), half with the old
    # ones (a replica not told yet). Whichever step each insert falls between, the week ends at the new prices.
    store = _store(iso)
    old, new = stale(), corrected()
    history = _history(24, 20)
    for events in history.values():
        _write(store, "ws1", events, old)
    rng = random.Random(25)
    late = [_events(rng, day, 5) for _ in range(3) for day in _days(*WEEK)]

    def keep_writing() -> None:
        client = clickhouse_client(iso.stack.clickhouse)
        try:
            for i, events in enumerate(late):
                _write(Store(client, store.database, store.queries), "ws1", events, new if i % 2 else old)
        finally:
            client.close()

    arriving = threading.Thread(target=keep_writing)

    class Checking(Repricer):
        def still_differing(self, request: Request, pricing: recompute.Pricing) -> list[recompute.Unit]:
            arriving.join()  # the job's final check comes after the last late write
            return super().still_differing(request, pricing)

    def on_progress(_: recompute.Progress) -> None:
        if arriving.ident is None:
            arriving.start()  # once the first partition's raw rows are re-priced

    progress = recompute.run(
        Checking(store.client, store.database), Request(*WEEK, "ws1", "test"), BookPricing(new), on_progress
    )

    assert progress.state == "done" and progress.rounds == 2  # the second round re-priced the stale writes
    week_events, week_usage = _expected(_in(history, *WEEK) + [e for events in late for e in events], new)
    stored = store.events("ws1")
    assert {e: stored[e] for e in week_events} == week_events
    assert store.usage("ws1", *WEEK) == week_usage


async def test_an_admin_changes_a_rate_for_a_past_week_and_recomputes_it_over_the_api(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    today = datetime.now(UTC).date()
    week = (today - timedelta(days=21), today - timedelta(days=15))
    after = (today - timedelta(days=14), today - timedelta(days=8))
    rng = random.Random(26)
    stored = {day: _events(rng, day, 9) for day in _days(week[0], after[1])}
    async with serving([create_rollup(iso.settings(RollupSettings, batch_timeout_ms=50))]) as http:
        async with publisher(iso) as pub:
            await pub.batch(ws["workspace_id"], [e for events in stored.values() for e in events])

        async def drained() -> bool:
            return await lag(iso) == 0

        await eventually(drained, timeout=60)

        async def usage(start: date, end: date) -> dict[str, Any]:
            answer = await http.get(f"/v1/usage?from={start}&to={end}", headers=auth(ws["read"]))
            return dict(answer.json()["totals"])

        before_after = await usage(*after)
        # A negotiated discount from the week's first day: events stored from now on get it; the stored ones of
        # the week get it once recomputed.
        put = await http.put(
            "/v1/prices/rates/deal",
            json={"model": "gpt-4o*", "effective_from": week[0].isoformat(), "kind": "discount", "percent": "20"},
            headers=auth(ws["admin"]),
        )
        assert put.status_code == 200, put.text
        refused = await http.post(
            "/v1/prices/recompute",
            json={"from": week[0].isoformat(), "to": week[1].isoformat()},
            headers=auth(ws["read"]),
        )
        assert refused.status_code == 403
        started = await http.post(
            "/v1/prices/recompute",
            json={"from": week[0].isoformat(), "to": week[1].isoformat()},
            headers=auth(ws["admin"]),
        )
        assert started.status_code == 202, started.text
        job = started.json()

        async def finished() -> dict[str, Any] | None:
            answer = (await http.get(f"/v1/prices/recompute/{job['job_id']}", headers=auth(ws["admin"]))).json()
            return dict(answer) if answer["state"] != "running" else None

        done = await eventually(finished, timeout=120)
        assert done["state"] == "done" and done["days_done"] == done["days_total"] == 7 and done["changed"] > 0
        assert done["requested_by"].startswith("key:")

        book = PriceBook()
        book.put_rate(
            TenantRate(
                rate_id="deal",
                workspace_id=ws["workspace_id"],
                model="gpt-4o*",
                effective_from=week[0],
                kind="discount",
                percent=Decimal(20),
                created_at=CREATED,
                created_by="t",
            )
        )
        _, expected = _expected(_in(stored, *week), book, ws["workspace_id"])
        totals = await usage(*week)
        assert Decimal(totals["cost_usd"]) == sum(c for k, (_, c) in expected.items() if k[0] != "unknown")
        assert totals["requests"] == 63
        assert await usage(*after) == before_after  # not in the range: untouched
