"""rollup's store on the ClickHouse engine: exact inserts and reconcile repairing injected drift exactly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from clickhouse_connect.driver.client import Client

from spendstream.common.envelope import stored_events
from spendstream.common.events import encode, sealed_events
from spendstream.common.prices import bundled
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.queries import UsageQueries
from spendstream.rollup.reconcile import Reconciler
from spendstream.rollup.schema import DIMENSIONS, MEASURES, migrate
from spendstream.rollup.writes import ClickHouseWriter, Inserted, StoredBatch
from tests.support import Isolation, usage_event

pytestmark = pytest.mark.integration


def _batch(workspace_id: str, n: int, batch_id: str = "b1", **fields: Any) -> StoredBatch:
    events = sealed_events([usage_event(**fields) for _ in range(n)])
    return StoredBatch.of(workspace_id, batch_id, datetime.now(UTC), events)


@dataclass
class _Db:
    client: Client
    writer: ClickHouseWriter
    queries: UsageQueries
    reconciler: Reconciler

    def insert(self, *batches: StoredBatch) -> Inserted:
        """What the consumer does with one chunk: encode it, then insert what is not stored yet."""
        return self.writer.insert_new(batches, self.writer.encode(batches))


def _setup(iso: Isolation) -> _Db:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    return _Db(
        client,
        ClickHouseWriter(client, iso.database, bundled()),
        UsageQueries(client, iso.database),
        Reconciler(client, iso.database),
    )


def _totals(db: _Db, workspace_id: str) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    rows = db.queries.usage(workspace_id, today - timedelta(days=1), today, [], {})
    return {m: rows[0][m] for m in ("requests", "input_tokens", "cost_usd")} if rows else {}


def test_insert_new_skips_what_is_stored_and_repeats_inside_one_call(iso: Isolation) -> None:
    db = _setup(iso)
    first = _batch("ws1", 5, cost_usd=1.0)
    assert db.insert(first).new == 5
    again = first.keeping([*first.events[2:], *_batch("ws1", 1, cost_usd=1.0).events, first.events[0]])
    assert db.insert(again).new == 1
    assert _totals(db, "ws1") == {"requests": 6, "input_tokens": 6000, "cost_usd": Decimal("6")}


def test_a_first_batch_stores_an_id_it_repeats_once_and_the_same_id_of_two_workspaces_in_each(iso: Isolation) -> None:
    db = _setup(iso)
    batch = _batch("ws1", 3, cost_usd=1.0)
    same_id_elsewhere = dataclasses.replace(batch, workspace_id="ws2", batch_id="b2", events=batch.events[:1])
    assert db.insert(batch.keeping([*batch.events, batch.events[1]]), same_id_elsewhere).new == 4
    assert _totals(db, "ws1")["requests"] == 3 and _totals(db, "ws2")["requests"] == 1


def test_a_retried_insert_of_the_same_events_is_discarded_in_the_raw_table_and_the_rollup(iso: Isolation) -> None:
    # As after a timeout that did in fact succeed: the same body again, the same content-derived token. Events
    # enter through the Null entry table; its view carries the token on to usage_events and usage_daily.
    db = _setup(iso)
    body = db.writer.encode([_batch("ws1", 3, cost_usd=0.5)])
    for _ in range(3):
        db.writer.insert(body)
    stored = db.client.query(f"SELECT count() FROM {iso.database}.usage_events WHERE workspace_id = 'ws1'")
    assert stored.result_rows[0][0] == 3  # without FINAL: no second copy was written at all
    assert _totals(db, "ws1") == {"requests": 3, "input_tokens": 3000, "cost_usd": Decimal("1.5")}


def test_insert_new_names_the_days_of_events_already_stored_so_their_rollup_can_be_repaired(iso: Isolation) -> None:
    db = _setup(iso)
    old = (datetime.now(UTC) - timedelta(days=40)).replace(microsecond=0)
    back_dated = _batch("ws1", 2, timestamp=old.isoformat())
    assert db.insert(back_dated).repeated_days == frozenset()
    again = db.insert(back_dated, _batch("ws1", 2, batch_id="b2"))
    assert again.new == 2 and again.repeated_days == frozenset({old.date()})


def test_reconcile_repairs_a_double_counted_and_a_missing_rollup_exactly(iso: Isolation) -> None:
    db = _setup(iso)
    db.insert(_batch("ws1", 4, cost_usd=0.5))
    # Drift 1: two consumers raced through the existence check; the raw table holds a row twice (FINAL
    # deduplicates it), the view counted it twice.
    db.client.command(
        f"INSERT INTO {iso.database}.usage_events SELECT * FROM {iso.database}.usage_events "
        "WHERE workspace_id = 'ws1' LIMIT 1",
        settings={"insert_deduplicate": 0},
    )
    # Drift 2: a view part lost (killed between the raw part and the view part) for another workspace.
    db.insert(
        _batch(
            "ws2",
            3,
            cost_usd=2.0,
            cache_creation_input_tokens=100,
            cache_creation_1h_input_tokens=40,
            service_tier="flex",
        )
    )
    keys = ("workspace_id", "day", *DIMENSIONS, "cost_source")
    db.client.command(
        f"INSERT INTO {iso.database}.usage_daily ({', '.join((*keys, *MEASURES))}) "
        f"SELECT {', '.join(keys)}, {', '.join(f'-{m}' for m in MEASURES)} FROM {iso.database}.usage_daily "
        "WHERE workspace_id = 'ws2'",
        settings={"insert_deduplicate": 0},
    )
    assert _totals(db, "ws1") == {"requests": 5, "input_tokens": 5000, "cost_usd": Decimal("2.5")}
    assert _totals(db, "ws2") == {}

    today = datetime.now(UTC).date()
    assert db.reconciler.reconcile(today, today) == 2
    assert _totals(db, "ws1") == {"requests": 4, "input_tokens": 4000, "cost_usd": Decimal("2")}
    assert _totals(db, "ws2") == {"requests": 3, "input_tokens": 3000, "cost_usd": Decimal("6")}
    [ws2] = db.queries.usage("ws2", today, today, ["service_tier"], {})
    assert (ws2["service_tier"], ws2["cache_creation_input_tokens"], ws2["cache_creation_1h_input_tokens"]) == (
        "flex",
        300,
        120,
    )
    # Exact means a second pass finds nothing, and a confirmed pass agrees.
    assert db.reconciler.reconcile(today, today) == 0
    assert db.reconciler.reconcile(today, today, confirm_after=0.01) == 0


def test_days_stored_since_names_back_dated_days_for_reconcile(iso: Isolation) -> None:
    db = _setup(iso)
    before = datetime.now(UTC) - timedelta(seconds=1)
    old = (datetime.now(UTC) - timedelta(days=90)).replace(microsecond=0)
    db.insert(_batch("ws1", 1, timestamp=old.isoformat()))
    assert db.reconciler.days_stored_since(before) == [old.date()]


def test_the_existence_check_is_per_workspace_and_works_across_chunks(
    iso: Isolation, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _setup(iso)
    monkeypatch.setattr("spendstream.rollup.writes.EXISTS_CHUNK", 3)
    shared = usage_event(cost_usd=1.0)
    a = _batch("wsA", 4, cost_usd=1.0)
    assert db.insert(a).new == 4
    # The same event_id in another workspace is a different event; a's events again are not new.
    b = StoredBatch.of("wsB", "b", datetime.now(UTC), sealed_events([{**shared, "event_id": a.events[0].event_id}]))
    assert db.insert(a, b, _batch("wsA", 2, batch_id="b2", cost_usd=1.0)).new == 3
    assert _totals(db, "wsA")["requests"] == 6 and _totals(db, "wsB")["requests"] == 1


def test_the_existence_check_finds_ids_that_need_escaping_as_well_as_plain_ones(iso: Isolation) -> None:
    # Plain ids are inlined into the query; an id ingest would never let through (a quote, a backslash, a NUL)
    # makes the whole chunk go through bound parameters instead, and must be found all the same.
    db = _setup(iso)
    plain = _batch("wsA", 2, cost_usd=1.0)
    three = _batch("wsA", 3, batch_id="b2", cost_usd=1.0)
    odd = three.keeping(
        [
            msgspec.structs.replace(event, event_id=event_id)
            for event, event_id in zip(three.events, ["it's", "back\\slash", "nul\x00byte"], strict=True)
        ]
    )
    assert db.insert(plain, odd).new == 5
    assert db.insert(plain).new == 0
    assert db.insert(odd).new == 0
    assert _totals(db, "wsA")["requests"] == 5


def test_what_is_stored_is_exactly_what_was_sealed_through_the_json_insert(iso: Isolation) -> None:
    # The insert travels as JSON that ClickHouse parses: every kind of value must come back as it went in.
    db = _setup(iso)
    tags = {
        "feature": 'it\'s "quoted" \\ back\tslash\nnewline',
        "route": "/v1/é/ü/日本",
        "customer_id": "c-1",
        "team.name": "{'map': [1]}",
    }
    at = datetime(2026, 11, 30, 23, 59, 59, 987654, tzinfo=timezone(timedelta(hours=-5)))
    batch = _batch(
        "ws1",
        1,
        event_id="odd-1",
        timestamp=at.isoformat(),
        cost_usd=0.000123456789,
        cached_input_tokens=7,
        tags=tags,
    )
    assert db.insert(batch).new == 1
    [stored] = db.queries.events_page("ws1", "", 10)
    assert stored["tags"] == tags and stored["feature"] == tags["feature"] and stored["route"] == tags["route"]
    assert stored["ts"].replace(tzinfo=UTC) == datetime(2026, 12, 1, 4, 59, 59, 987000, tzinfo=UTC)  # ms, UTC
    assert stored["cost_usd"] == Decimal("0.000123456")  # Decimal(18, 9) keeps nine places, as before
    assert (stored["cached_input_tokens"], stored["reasoning_tokens"], stored["cost_source"]) == (7, 0, "reported")


def _sealed(workspace_id: str, raws: list[dict[str, Any]], batch_id: str = "b1") -> StoredBatch:
    """A batch as the consumer reads it from a record: the events, and their JSON array as sealed."""
    plaintext = encode(sealed_events(raws))
    events, events_json = stored_events(plaintext)
    assert events_json is not None
    return StoredBatch(
        workspace_id, batch_id, datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC), events, None, events_json
    )


_KINDS = [  # every kind of cost and value a batch can carry
    usage_event(
        event_id="reported",
        cost_usd=0.000123456789,
        cached_input_tokens=7,
        reasoning_tokens=3,
        timestamp=datetime(2026, 11, 30, 23, 59, 59, 987654, tzinfo=timezone(timedelta(hours=-5))).isoformat(),
        tags={
            "feature": 'it\'s "quoted" \\ back\tslash\nnewline',
            "route": "/v1/é/日本",
            "customer_id": "c-1",
            "team.name": "{'map': [1]}",
        },
    ),
    usage_event(event_id="reported-zero", cost_usd=0, tags={}),
    usage_event(event_id="big", cost_usd=1_000_000, input_tokens=0, output_tokens=0, latency_ms=0),
    usage_event(
        event_id="computed",
        provider="openai",
        model="gpt-4o-mini-2024-07-18",
        input_tokens=10_000,
        cached_input_tokens=4_000,
        output_tokens=2_000,
        cost_usd=None,
        tags={"task_type": "t", "customer_plan": "free", "environment": "prod", "customer_id": "c-2"},
    ),
    usage_event(
        event_id="reasoning",
        provider="google",
        model="gemini-2.5-flash",
        input_tokens=1_000,
        output_tokens=2_000,
        reasoning_tokens=1_500,
        cost_usd=None,
    ),
    usage_event(event_id="unknown", provider="acme", model="no-such-model", cost_usd=None),
    usage_event(
        event_id="computed-writes",
        provider="anthropic",
        model="claude-sonnet-4-5",
        input_tokens=10_000,
        cached_input_tokens=2_000,
        cache_creation_input_tokens=5_000,
        cache_creation_1h_input_tokens=1_000,
        output_tokens=300,
        cost_usd=None,
    ),
    usage_event(
        event_id="cache-writes",
        provider="anthropic",
        model="claude-sonnet-4-5",
        input_tokens=10_000,
        cached_input_tokens=2_000,
        cache_creation_input_tokens=5_000,
        cache_creation_1h_input_tokens=1_000,
        output_tokens=300,
        service_tier="priority",
        reservation_id="rsv_1",
        cost_usd=0.25,
    ),
]


def test_a_batch_is_stored_alike_from_its_sealed_json_and_encoded_again_from_its_events(iso: Isolation) -> None:
    # The one way into usage_events (schema.py) takes a batch's events as ingest sealed them, or, where some were
    # left out, encoded again from the structs: the bodies are the same bytes and every column comes out alike.
    db = _setup(iso)
    as_sealed = _sealed("wsSealed", _KINDS)
    as_structs = dataclasses.replace(as_sealed, workspace_id="wsStructs", events_json=None)
    assert db.writer.encode([as_structs]) == db.writer.encode(
        [dataclasses.replace(as_sealed, workspace_id="wsStructs")]
    )
    assert db.insert(as_sealed).new == len(_KINDS)
    assert db.insert(as_structs).new == len(_KINDS)
    sealed, structs = db.queries.events_page("wsSealed", "", 100), db.queries.events_page("wsStructs", "", 100)
    assert len(sealed) == len(_KINDS) and sealed == structs
    by_id = {r["event_id"]: r for r in sealed}
    assert (by_id["computed"]["cost_usd"], by_id["computed"]["cost_source"]) == (Decimal("0.0024"), "computed")
    assert (by_id["unknown"]["cost_usd"], by_id["unknown"]["cost_source"]) == (0, "unknown")
    # 3000*3e-6 (input) + 2000*3e-7 (cache reads) + 4000*3.75e-6 (5-minute writes) + 1000*6e-6 (1-hour writes)
    # + 300*1.5e-5 (output)
    assert by_id["computed-writes"]["cost_usd"] == Decimal("0.0351")
    assert by_id["reported"]["cost_usd"] == Decimal("0.000123456") and by_id["reported"]["route"] == "/v1/é/日本"
    assert by_id["computed"]["customer_plan"] == "free" and by_id["reported-zero"]["tags"] == {}
    writes = by_id["cache-writes"]
    assert (
        writes["cached_input_tokens"],
        writes["cache_creation_input_tokens"],
        writes["cache_creation_1h_input_tokens"],
        writes["service_tier"],
        writes["reservation_id"],
    ) == (2_000, 5_000, 1_000, "priority", "rsv_1")
    # an event without them stores zeros and empty strings
    assert (
        by_id["big"]["cache_creation_input_tokens"],
        by_id["big"]["service_tier"],
        by_id["big"]["reservation_id"],
    ) == (
        0,
        "",
        "",
    )
    day = by_id["reported"]["ts"].date()
    assert db.queries.daily_rows("wsSealed", day) == db.queries.daily_rows("wsStructs", day)
    [tiered] = [r for r in db.queries.daily_rows("wsSealed", by_id["cache-writes"]["ts"].date()) if r["service_tier"]]
    assert (
        tiered["service_tier"],
        tiered["requests"],
        tiered["cache_creation_input_tokens"],
        tiered["cache_creation_1h_input_tokens"],
    ) == ("priority", 1, 5_000, 1_000)
    assert (
        db.queries.watermark("wsSealed")
        == db.queries.watermark("wsStructs")
        == as_sealed.ingested_at.replace(microsecond=123000)
    )


def test_a_retried_batch_insert_is_discarded_and_a_repeated_event_is_stored_once(iso: Isolation) -> None:
    db = _setup(iso)
    first = _sealed("ws1", [usage_event(event_id=f"e{i}", cost_usd=0.5) for i in range(3)])
    for _ in range(3):  # as after a timeout that did in fact succeed: the same body, the same token
        db.writer.insert(db.writer.encode([first]))
    stored = db.client.query(f"SELECT count() FROM {iso.database}.usage_events WHERE workspace_id = 'ws1'")
    assert stored.result_rows[0][0] == 3  # without FINAL: no second copy was written at all
    # A redelivery with one new event and one repeated inside the batch: the kept event alone, stored once.
    again = _sealed("ws1", [usage_event(event_id=f"e{i}", cost_usd=0.5) for i in (2, 3, 3)], batch_id="b2")
    inserted = db.insert(again)
    assert inserted.new == 1 and inserted.repeated_days == {datetime.now(UTC).date()}
    assert _totals(db, "ws1") == {"requests": 4, "input_tokens": 4000, "cost_usd": Decimal("2")}
