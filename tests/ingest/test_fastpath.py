"""The fast path (spendstream.ingest.fastpath): valid batches take it and seal the bytes of the sealed-event
contract; what it cannot take it leaves to validate_events. Each field's verdicts: test_event_rules.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendstream import guard
from spendstream.common.envelope import open_plaintext, seal, stored_events
from spendstream.common.events import (
    BOUNDED_FIELDS,
    MAX_EVENTS_PER_BATCH,
    EncodedBatch,
    RequestEvent,
    SealedBatch,
    SealedEvent,
    encode,
)
from spendstream.ingest import fastpath
from spendstream.ingest.body import BodyError, parse_batch
from tests.ingest.test_event_rules import MAX_AGE, NOW, absent, explained, fast, numbered_uuids, verdict

FIELDS = (
    "event_id",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "latency_ms",
    "cost_usd",
    "timestamp",
    "tags",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "service_tier",
    "reservation_id",
)
# Sealed only when set (after `tags`): an event without them seals the bytes it sealed before they existed.
OPTIONAL_TAIL = FIELDS[FIELDS.index("tags") + 1 :]


def _valid(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "e1",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 10,
        "output_tokens": 2,
        "latency_ms": 5,
        "timestamp": "2026-11-23T11:00:00.5+01:00",
        "cost_usd": 0.25,
        "tags": {"feature": "chat", "customer_id": "cust-1"},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not _DROP}


_DROP = object()


def _contract(events: list[dict[str, Any]]) -> bytes:
    """The sealed plaintext of valid events, written from the contract: every field in order (those after `tags`
    only when set), a missing event_id
    named by the caller (absent-<index>), null by the server (u<n>, in order), the cost as the text of the
    decimal its JSON number names, the timestamp in UTC with microseconds when there are any, and `Z`."""
    sealed: list[dict[str, Any]] = []
    servers = iter(range(len(events)))
    for index, event in enumerate(events):
        stamp = datetime.fromisoformat(event["timestamp"]).astimezone(UTC)
        fraction = f".{stamp.microsecond:06d}" if stamp.microsecond else ""
        cost = event.get("cost_usd")
        event_id = event.get("event_id", _DROP)
        sealed.append(
            {
                "event_id": absent(index)
                if event_id is _DROP
                else (f"u{next(servers)}" if event_id is None else event_id),
                "provider": event["provider"],
                "model": event["model"],
                "input_tokens": event["input_tokens"],
                "output_tokens": event["output_tokens"],
                "cached_input_tokens": event.get("cached_input_tokens"),
                "reasoning_tokens": event.get("reasoning_tokens"),
                "latency_ms": event["latency_ms"],
                "cost_usd": None if cost is None else str(Decimal(repr(cost))),
                "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z",
                "tags": event.get("tags", {}),
                **{name: event[name] for name in OPTIONAL_TAIL if event.get(name) is not None},
            }
        )
    return orjson.dumps({"events": sealed})


@st.composite
def _valid_event(draw: st.DrawFn) -> dict[str, Any]:
    """Events every rule accepts, spelled as clients usually spell them."""
    total_in, total_out = draw(st.integers(0, 10**9)), draw(st.integers(0, 10**9))
    cached = draw(st.none() | st.integers(0, total_in))
    writes = draw(st.none() | st.integers(0, total_in - (cached or 0)))
    stamp = draw(
        st.datetimes(min_value=datetime(2025, 11, 17), max_value=datetime(2026, 11, 23, 12, 5), timezones=st.just(UTC))
    )
    return _valid(
        event_id=draw(st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z") | st.none() | st.just(_DROP)),
        provider=draw(st.from_regex(r"\A[a-z0-9._-]{1,64}\Z")),
        model=draw(st.from_regex(r"\A[A-Za-z0-9._:/@-]{1,128}\Z")),
        input_tokens=total_in,
        output_tokens=total_out,
        cached_input_tokens=cached,
        reasoning_tokens=draw(st.none() | st.integers(0, total_out)),
        cache_creation_input_tokens=writes,
        cache_creation_1h_input_tokens=_DROP if writes is None else draw(st.none() | st.integers(0, writes)),
        service_tier=draw(st.sampled_from([_DROP, None, "default", "flex", "priority", "scale", "batch"])),
        reservation_id=draw(st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z") | st.none() | st.just(_DROP)),
        latency_ms=draw(st.integers(0, 3_600_000)),
        cost_usd=draw(st.none() | st.integers(0, 10**6) | st.floats(0, 1e6).filter(lambda f: f == round(f, 12))),
        timestamp=stamp.astimezone(
            draw(st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]))
        ).isoformat(),
        tags=draw(
            st.dictionaries(
                st.sampled_from(["feature", "route", "customer_id", "environment", "team"]),
                st.from_regex(r"\A[a-z0-9-]{0,20}\Z"),
                max_size=5,
            )
        ),
    )


@settings(max_examples=200)
@given(st.lists(_valid_event(), min_size=1, max_size=20))
def test_valid_batches_take_the_fast_path_and_seal_the_bytes_of_the_contract(events: list[dict[str, Any]]) -> None:
    body = orjson.dumps({"events": events})
    assert fast(body) is not None
    assert verdict(body) == _contract(events)


@pytest.mark.parametrize(
    "overrides",
    [
        {"input_tokens": 0, "output_tokens": -0, "cost_usd": -0.0},  # -0 is 0, and -0.0 is within 0 … 10⁶
        {"cost_usd": 5},
        {"cost_usd": 5.0},
        {"cost_usd": 1e-7},
        {"cost_usd": 1_000_000},
        {"tags": {"feature": "caf\u00e9 \u65e5\u672c \U0001f600" * 10}},  # 120 characters, not bytes
        {"tags": {f"t{i}": "v" * 120 for i in range(24)}},
        {"timestamp": "2026-11-23T12:05:00Z"},
        {"timestamp": "2026-11-23 12:00:00.123+00:00"},
        {"timestamp": "2026-11-23T12:00:00.123456789Z"},
        {"event_id": None},
        {"event_id": _DROP},
        {"cost_usd": None, "cached_input_tokens": None},
    ],
)
def test_edge_values_take_the_fast_path(overrides: dict[str, Any]) -> None:
    assert fast(orjson.dumps({"events": [_valid(**overrides)]})) is not None


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"input_tokens": True}, "invalid_value"),
        ({"input_tokens": 1e3}, "invalid_value"),
        ({"latency_ms": 5.0}, "invalid_value"),
        ({"cost_usd": "NaN"}, "invalid_value"),
        ({"cost_usd": "0.5"}, "invalid_value"),
        ({"cost_usd": 1e-13}, "invalid_value"),
        ({"cost_usd": 1_000_000.5}, "out_of_range"),
        ({"cost_usd": -0.01}, "out_of_range"),
        ({"timestamp": "2026-11-23T12:00:00"}, "invalid_timestamp"),
        ({"timestamp": 1795000000}, "invalid_timestamp"),
        ({"timestamp": "2026-11-30T12:00:00Z"}, "timestamp_in_future"),
        ({"timestamp": "2024-11-23T12:00:00Z"}, "timestamp_too_old"),
        ({"tags": {"feature": "v" * 121}}, "too_long"),
        ({"tags": {f"t{i}": "v" for i in range(25)}}, "too_many_tags"),
        ({"tags": {"prompt_text": "x"}}, "content_field"),
        ({"tags": {"owner": "bob@example.com"}}, "pii_value"),
        ({"tags": {"Feature": "chat"}}, "invalid_tag_key"),
        ({"messages": [{"role": "user"}]}, "content_field"),
        ({"systemPrompt": "x"}, "content_field"),
        ({"workspace_id": "ws_other"}, "forbidden_field"),
        ({"provider": "openai\n"}, "invalid_format"),
        ({"cached_input_tokens": 11}, "inconsistent_tokens"),
        ({"model": _DROP}, "missing_field"),
    ],
)
def test_one_refused_event_leaves_the_batch_to_validate_events(overrides: dict[str, Any], code: str) -> None:
    body = orjson.dumps({"events": [_valid(), _valid(**overrides)]})
    assert fast(body) is None
    assert [(index, c) for index, _, c in explained(body)[1]] == [(1, code)]


def test_an_event_without_an_id_is_named_by_the_caller_and_a_null_one_gets_a_uuid7() -> None:
    checked = fastpath.check(
        orjson.dumps({"events": [_valid(event_id=_DROP), _valid(event_id=None)]}), NOW, MAX_AGE, absent
    )
    assert checked is not None and checked.now == NOW
    assert checked.events[0].event_id == "absent-0" and len(checked.events[1].event_id) == 36


def _shape_error(body: bytes) -> str | None:
    try:
        parse_batch(body)
    except BodyError as exc:
        return exc.code
    return None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"events":[]}', "empty_batch"),
        (b"", "invalid_json"),
        (b"{", "invalid_json"),
        (b'{"events":[' + orjson.dumps(_valid()) + b"],}", "invalid_json"),
        (b"\xef\xbb\xbf{}", "invalid_json"),
        (b'{"events":[' + orjson.dumps(_valid()) + b"]}x", "invalid_json"),
        (b"[" + orjson.dumps(_valid()) + b"]", "invalid_batch"),
        (b'{"events":[' + orjson.dumps(_valid()) + b'],"extra":1}', "unknown_field"),
        (orjson.dumps({"events": [_valid()] * (MAX_EVENTS_PER_BATCH + 1)}), "too_many_events"),
    ],
)
def test_a_batch_of_the_wrong_shape_is_left_to_the_shape_check(body: bytes, code: str) -> None:
    assert fast(body) is None
    assert _shape_error(body) == code


def test_the_batch_limit_is_inclusive_and_surrounding_whitespace_or_a_repeated_events_key_change_nothing() -> None:
    assert fast(orjson.dumps({"events": [_valid()] * MAX_EVENTS_PER_BATCH})) is not None
    one = orjson.dumps(_valid())
    expected = _contract([_valid()])
    assert verdict(b' \n{"events":[' + one + b"]}\t ") == expected
    repeated = b'{"events":[1],"events":[' + one + b"]}"  # the last key counts, as in orjson
    assert fast(repeated) is None and explained(repeated) == (expected, [])  # msgspec refuses the first one


def test_a_pii_looking_value_is_never_remembered_as_clean() -> None:
    body = orjson.dumps({"events": [_valid(tags={"owner": "alice@example.org"})]})
    assert fast(body) is None
    assert "alice@example.org" not in guard._CLEAN_VALUES  # the memo the fast path checks tag values with
    assert fast(body) is None


def test_the_request_form_is_derived_from_the_sealed_event_field_for_field() -> None:
    assert SealedEvent.__struct_fields__ == FIELDS
    assert RequestEvent.__struct_fields__ == FIELDS
    assert set(BOUNDED_FIELDS) < set(FIELDS)  # a misspelt name would bound nothing


_PLAINTEXT = (
    b'{"events":[{"event_id":"e1","provider":"openai","model":"gpt-4o","input_tokens":10,"output_tokens":2,'
    b'"cached_input_tokens":null,"reasoning_tokens":null,"latency_ms":5,"cost_usd":"0.25",'
    b'"timestamp":"2026-11-23T10:00:00.500000Z","tags":{"feature":"chat","customer_id":"cust-1"}},'
    b'{"event_id":"e2","provider":"openai","model":"gpt-4o","input_tokens":10,"output_tokens":2,'
    b'"cached_input_tokens":null,"reasoning_tokens":null,"latency_ms":5,"cost_usd":null,'
    b'"timestamp":"2026-11-23T10:00:00.500000Z","tags":{}},'
    b'{"event_id":"e3","provider":"openai","model":"gpt-4o","input_tokens":10,"output_tokens":2,'
    b'"cached_input_tokens":4,"reasoning_tokens":1,"latency_ms":5,"cost_usd":"3",'
    b'"timestamp":"2026-11-23T12:00:00Z",'
    b'"tags":{"feature":"caf\xc3\xa9 \xf0\x9f\x98\x80","route":"a\\"b\\\\c\\u0001"}}]}'
)


def test_a_sealed_batch_is_byte_for_byte_the_plaintext_rollup_reads() -> None:
    events = [
        _valid(),
        _valid(event_id="e2", cost_usd=None, tags={}),
        _valid(
            event_id="e3",
            cost_usd=3,
            timestamp="2026-11-23T12:00:00Z",
            cached_input_tokens=4,
            reasoning_tokens=1,
            tags={"feature": "caf\u00e9 \U0001f600", "route": 'a"b\\c\u0001'},
        ),
    ]
    body = orjson.dumps({"events": events})
    with numbered_uuids():
        checked = fastpath.check(body, NOW, MAX_AGE, absent)
    assert checked is not None and verdict(body) == _PLAINTEXT == _contract(events)
    key = os.urandom(32)
    envelope = seal(
        EncodedBatch(encode(checked.events), len(checked.events)),
        workspace_id="ws_a",
        batch_id="b1",
        key=key,
        key_version=1,
        ingested_at=NOW,
    )
    assert envelope.event_count == 3
    assert open_plaintext(envelope, key) == _PLAINTEXT
    assert stored_events(open_plaintext(envelope, key))[0] == checked.events
    assert msgspec.json.decode(_PLAINTEXT, type=SealedBatch).events == checked.events


def test_the_fields_after_tags_are_sealed_when_set_and_left_out_when_null_or_absent() -> None:
    parts = {
        "cache_creation_input_tokens": 6,
        "cache_creation_1h_input_tokens": 2,
        "service_tier": "batch",
        "reservation_id": "rsv-1",
    }
    events = [
        _valid(cached_input_tokens=4, **parts),
        _valid(event_id="e2", **dict.fromkeys(parts)),
        _valid(event_id="e3"),
    ]
    sealed = verdict(orjson.dumps({"events": events}))
    assert isinstance(sealed, bytes)
    assert sealed == _contract(events)
    first, second, third = orjson.loads(sealed)["events"]
    assert list(first)[-5:] == ["tags", *parts] and {k: first[k] for k in parts} == parts
    assert list(second) == list(third) == list(FIELDS[: FIELDS.index("tags") + 1])
    read = stored_events(sealed)[0]
    assert (read[0].cache_creation_input_tokens, read[0].service_tier, read[0].reservation_id) == (6, "batch", "rsv-1")
    assert (read[1].cache_creation_input_tokens, read[1].cache_creation_1h_input_tokens) == (None, None)
