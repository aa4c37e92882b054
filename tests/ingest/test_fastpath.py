"""The fast path (spendstream.ingest.fastpath): it accepts a body exactly when the reference path (orjson, the
HTTP handler's shape checks, validate_events) accepts every event of it, and then seals the very bytes
`EventBatch(events=...).model_dump_json()` writes for the reference's events."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest.mock import patch

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spendstream import guard
from spendstream.common.envelope import open_plaintext, seal, stored_events
from spendstream.common.events import (
    BOUNDED_FIELDS,
    MAX_EVENTS_PER_BATCH,
    EncodedBatch,
    EventBatch,
    SealedEvent,
    UsageEvent,
    validate_events,
)
from spendstream.ingest import fastpath

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(days=372)


@contextmanager
def _numbered_uuids() -> Iterator[None]:
    """Server-assigned ids as u0, u1, … so the two paths' events compare byte for byte."""
    counter = itertools.count()
    with (
        patch("spendstream.ingest.fastpath.uuid7", lambda: f"u{next(counter)}"),
        patch("spendstream.common.events.uuid_utils.uuid7", lambda: f"u{next(counter)}"),
    ):
        yield


def _absent(index: int) -> str:
    return f"absent-{index}"


def _reference(body: bytes) -> list[UsageEvent] | None:
    """The events the reference path accepts when it accepts all of them (and nothing else), else None."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or set(parsed) != {"events"} or not isinstance(parsed["events"], list):
        return None
    events: list[Any] = parsed["events"]
    if not 1 <= len(events) <= MAX_EVENTS_PER_BATCH:
        return None
    for index, event in enumerate(events):  # as the callers name an event sent without an id
        if isinstance(event, dict) and "event_id" not in event:
            event["event_id"] = _absent(index)
    with _numbered_uuids():
        validated = validate_events(events, NOW, MAX_AGE)
    return None if validated.rejected else validated.accepted


def _fast(body: bytes) -> bytes | None:
    with _numbered_uuids():
        checked = fastpath.check(body, NOW, MAX_AGE, _absent)
    return None if checked is None else fastpath.encode(checked.events)


def _assert_same(body: bytes) -> bytes | None:
    reference, fast = _reference(body), _fast(body)
    if reference is not None:  # the reference path's events are sealed in the fast path's form: the same bytes
        modelled = EventBatch(events=reference).model_dump_json().encode()
        assert fastpath.encode(list(map(SealedEvent.of, reference))) == modelled
    if fast is not None:
        assert reference is not None, "the fast path accepted what the reference refuses"
        assert fast == EventBatch(events=reference).model_dump_json().encode()
    return fast


# JSON *text* for each field, so the tests reach what a dict cannot say: 1e3 and 1.0 for integers, duplicate
# keys, escapes, numbers past 64 bits.
def _text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _mostly(valid: st.SearchStrategy[str], tricky: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Usually a valid spelling, sometimes a tricky one: whole events then pass often enough to compare."""
    return st.integers(0, 15).flatmap(lambda n: valid if n else tricky)


_INSTANT = st.datetimes(
    min_value=datetime(2025, 11, 17),
    max_value=datetime(2026, 11, 23, 12, 5),
    timezones=st.sampled_from(
        [
            UTC,
            timezone(timedelta(hours=1)),
            timezone(timedelta(hours=-23, minutes=-59)),
            timezone(timedelta(hours=5, minutes=30)),
        ]
    ),
)
_STAMPS = _mostly(
    _INSTANT.map(lambda d: _text(d.isoformat())),
    st.one_of(
        st.sampled_from(
            [
                NOW + timedelta(minutes=5),
                NOW + timedelta(minutes=5, microseconds=1),
                NOW - MAX_AGE,
                NOW - MAX_AGE - timedelta(microseconds=1),
            ]
        ).map(lambda d: d.isoformat()),
        st.sampled_from(
            [
                "2026-11-23T12:00:00Z",
                "2026-11-23 12:00:00Z",
                "2026-11-23t12:00:00z",
                "2026-11-23T12:00:00.1234567Z",
                "2026-11-23T12:00:00.123456789+00:00",
                "2026-11-23T12:00:00",
                "2026-11-23T12:00:60Z",
                "2026-11-23T24:00:00Z",
                "2026-11-23T12:00:00+0100",
                "2026-11-23T12:00Z",
                "20261123T120000Z",
                "2026-11-23T12:00:00.Z",
                "2026-02-29T00:00:00Z",
                "2026-11-23T12:00:00+24:00",
                "2026-11-23T12:00:00+01:60",
                "2026-11-23T12:00:00-00:00",
                "2026-11-23T12:00:00+01:00:30",
                "0001-01-01T00:00:00+01:00",
                "9999-12-31T23:59:59-01:00",
                "2026-11-23T12:00:00.000000Z",
                "2026-11-23T12:00:00.5+05:30",
                "\uff12026-11-23T12:00:00Z",
                "2026-11-23T12:00:00Z\n",
                "2026-11-23T12:00:00+00:00 ",
            ]
        ),
        st.tuples(_INSTANT, st.integers(0, 9), st.sampled_from(["Z", "+00:00", "-00:00", "+01:00", "z"])).map(
            lambda t: t[0].strftime("%Y-%m-%dT%H:%M:%S") + ("." + "7" * t[1] if t[1] else "") + t[2]
        ),
    ).map(_text)
    | st.sampled_from(["1700000000", "null", "true"]),
)

_IDS = _mostly(
    st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z").map(_text),
    st.sampled_from(['""', _text("a" * 65), '"a\\n"', '"a b"', '"\u00e9"', "null", "12"]),
)
_PROVIDERS = _mostly(
    st.sampled_from(["openai", "anthropic", "a.b-c_d", "x" * 64]).map(_text),
    st.sampled_from(['"OpenAI"', '"openai\\n"', '""', _text("x" * 65), "1", "null"]),
)
_MODELS = _mostly(
    st.from_regex(r"\A[A-Za-z0-9._:/@-]{1,128}\Z").map(_text),
    st.sampled_from(['"gpt 4"', '"gpt-4o\\n"', _text("m" * 129), '"\u00b5"']),
)


def _ints(low: int, high: int) -> st.SearchStrategy[str]:
    return _mostly(
        st.integers(low, high).map(str),
        st.integers(low - 2, high + 2).map(str)
        | st.sampled_from(
            [
                str(low),
                str(high),
                str(high + 1),
                "-0",
                "1.0",
                "1e3",
                "1E2",
                "true",
                "false",
                '"5"',
                "null",
                "1" + "0" * 25,
                "-1",
            ]
        ),
    )


_COSTS = _mostly(
    st.floats(min_value=0, max_value=1e6).map(repr) | st.integers(0, 1_000_000).map(str),
    st.floats(min_value=0, max_value=2e6).map(repr)
    | st.integers(-1, 2_000_000).map(str)
    | st.floats(min_value=1e-15, max_value=1e-5).map(repr)
    | st.decimals(min_value=0, max_value=10, places=13).map(str)
    | st.sampled_from(
        [
            "-0.0",
            "-0",
            "1e400",
            "1E-7",
            "0.1e1",
            "1000000",
            "1000000.0000001",
            '"0.5"',
            '"NaN"',
            "true",
            "null",
            "0.10000000000000001",
            "1e6",
            "123.000",
        ]
    ),
)
_TAG_KEYS = _mostly(
    st.sampled_from(["feature", "route", "customer_id", "environment"]) | st.from_regex(r"\A[a-z][a-z0-9_.-]{0,8}\Z"),
    st.sampled_from(
        [
            "prompt_text",
            "messages",
            "systemPrompt",
            "Feature",
            "1a",
            "a" * 64,
            "a" * 65,
            "caf\u00e9",
            "input",
            "output_tokens",
            "context_window",
            "user.message",
            "",
        ]
    ),
)
_TAG_VALUES = _mostly(
    st.text(max_size=12).map(_text),
    st.sampled_from(
        [
            "bob@example.com",
            "+1 415 555 0100",
            "10.0.0.1",
            "2001:db8::1",
            "4111 1111 1111 1111",
            "v" * 120,
            "v" * 121,
            "\U0001f600" * 120,
            "\U0001f600" * 121,
            "prod",
            "cust-42",
        ]
    ).map(_text)
    | st.sampled_from(["3", "null", '{"prompt":"x"}', '["x"]', '"\\ud800"', '"\\u0000"', '"\\ud83d\\ude00"']),
)


@st.composite
def _event_text(draw: st.DrawFn) -> str:
    fields: list[tuple[str, str]] = []
    optional = {
        "event_id": _IDS,
        "cached_input_tokens": _ints(0, 1000),
        "reasoning_tokens": _ints(0, 1000),
        "cost_usd": _COSTS,
    }
    required = {
        "provider": _PROVIDERS,
        "model": _MODELS,
        "input_tokens": _ints(0, 10**9),
        "output_tokens": _ints(0, 10**9),
        "latency_ms": _ints(0, 3_600_000),
        "timestamp": _STAMPS,
    }
    for name, values in {**optional, **required}.items():
        if name in required and draw(st.integers(0, 40)) == 0:
            continue  # missing
        if name in optional and draw(st.booleans()):
            continue
        fields.append((name, draw(values)))
    if draw(st.booleans()):
        tags = draw(st.lists(st.tuples(_TAG_KEYS, _TAG_VALUES), max_size=26))
        fields.append(("tags", "{" + ",".join(f"{_text(k)}:{v}" for k, v in tags) + "}"))
    if draw(st.integers(0, 20)) == 0:
        fields.append(
            draw(
                st.sampled_from(
                    [
                        ("workspace_id", '"ws_x"'),
                        ("prompt", '"x"'),
                        ("messages", "[]"),
                        ("systemPrompt", '"x"'),
                        ("extra", "1"),
                        ("tags", "null"),
                        ("tags", "[]"),
                        ("input_tokens", '"x"'),
                    ]
                )
            )
        )
    if fields and draw(st.integers(0, 10)) == 0:
        fields.append(draw(st.sampled_from(fields)))  # a duplicate key: the last one counts, as in orjson
    draw(st.randoms()).shuffle(fields)
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields) + "}"


@st.composite
def _body(draw: st.DrawFn) -> bytes:
    events = draw(st.lists(_event_text(), min_size=0, max_size=3))
    text = '{"events":[' + ",".join(events) + "]}"
    shape = draw(st.integers(0, 40))
    if shape == 0:
        text = '{"events":[' + ",".join(events) + '],"extra":1}'
    elif shape == 1:
        text = "[" + ",".join(events) + "]"
    elif shape == 2:
        text = f" \n{text}\t "
    elif shape == 3:
        text = text + "x"
    elif shape == 4:
        text = '{"events":[1],' + text[1:]  # a duplicate "events" key
    return text.encode()


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(_body())
@example(
    b'{"events":[{"provider":"openai","model":"m","input_tokens":1,"output_tokens":1,"latency_ms":1,'
    b'"timestamp":"2026-11-23T12:00:00Z"}]}'
)
def test_the_fast_path_accepts_only_what_the_reference_accepts_and_seals_the_same_bytes(body: bytes) -> None:
    _assert_same(body)


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


@st.composite
def _valid_event(draw: st.DrawFn) -> dict[str, Any]:
    """Events inside the fast path's domain: every rule met, spelled as clients usually spell them."""
    total_in, total_out = draw(st.integers(0, 10**9)), draw(st.integers(0, 10**9))
    stamp = draw(
        st.datetimes(min_value=datetime(2025, 11, 17), max_value=datetime(2026, 11, 23, 12, 5), timezones=st.just(UTC))
    )
    return _valid(
        event_id=draw(st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z") | st.none() | st.just(_DROP)),
        provider=draw(st.from_regex(r"\A[a-z0-9._-]{1,64}\Z")),
        model=draw(st.from_regex(r"\A[A-Za-z0-9._:/@-]{1,128}\Z")),
        input_tokens=total_in,
        output_tokens=total_out,
        cached_input_tokens=draw(st.none() | st.integers(0, total_in)),
        reasoning_tokens=draw(st.none() | st.integers(0, total_out)),
        latency_ms=draw(st.integers(0, 3_600_000)),
        cost_usd=draw(st.none() | st.integers(0, 10**6) | st.floats(0, 1e6).filter(lambda f: f == round(f, 12))),
        timestamp=stamp.astimezone(draw(st.sampled_from([UTC, timezone(timedelta(hours=2))]))).isoformat(),
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
def test_valid_batches_take_the_fast_path(events: list[dict[str, Any]]) -> None:
    assert _assert_same(orjson.dumps({"events": events})) is not None


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"input_tokens": True}, "invalid_value"),
        ({"input_tokens": 1e3}, "invalid_value"),
        ({"latency_ms": 5.0}, "invalid_value"),
        ({"cost_usd": "NaN"}, "invalid_value"),
        ({"cost_usd": 1e-13}, "invalid_value"),
        ({"cost_usd": 1_000_000.5}, "out_of_range"),
        ({"cost_usd": -0.01}, "out_of_range"),
        ({"timestamp": "2026-11-23T12:00:00"}, "invalid_timestamp"),
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
def test_each_refusal_leaves_the_fast_path_to_the_reference(overrides: dict[str, Any], code: str) -> None:
    body = orjson.dumps({"events": [_valid(), _valid(**overrides)]})
    assert _fast(body) is None
    rejected = validate_events(orjson.loads(body)["events"], NOW, MAX_AGE).rejected
    assert [(r.index, r.code) for r in rejected] == [(1, code)]


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
        {"event_id": None},
        {"event_id": _DROP},
        {"cost_usd": None, "cached_input_tokens": None},
    ],
)
def test_edge_values_the_reference_accepts_are_sealed_alike(overrides: dict[str, Any]) -> None:
    assert _assert_same(orjson.dumps({"events": [_valid(**overrides)]})) is not None


def test_an_event_without_an_id_is_named_by_the_caller_and_a_null_one_gets_a_uuid7() -> None:
    checked = fastpath.check(
        orjson.dumps({"events": [_valid(event_id=_DROP), _valid(event_id=None)]}), NOW, MAX_AGE, _absent
    )
    assert checked is not None and checked.now == NOW
    assert checked.events[0].event_id == "absent-0" and len(checked.events[1].event_id) == 36


def test_a_batch_over_the_limit_or_empty_or_not_json_is_left_to_the_reference() -> None:
    assert _fast(orjson.dumps({"events": [_valid()] * (MAX_EVENTS_PER_BATCH + 1)})) is None
    assert _fast(orjson.dumps({"events": [_valid()] * MAX_EVENTS_PER_BATCH})) is not None
    for body in (b'{"events":[]}', b"", b"{", b'{"events":[' + orjson.dumps(_valid()) + b"],}", b"\xef\xbb\xbf{}"):
        assert _fast(body) is None


def test_a_pii_looking_value_is_never_remembered_as_clean() -> None:
    body = orjson.dumps({"events": [_valid(tags={"owner": "alice@example.org"})]})
    assert _fast(body) is None
    assert "alice@example.org" not in guard._CLEAN_VALUES  # the memo the fast path checks tag values with
    assert _fast(body) is None


def test_the_sealed_event_and_the_request_form_derived_from_it_have_the_usage_events_fields_in_order() -> None:
    assert SealedEvent.__struct_fields__ == tuple(UsageEvent.model_fields)
    assert fastpath._WireEvent.__struct_fields__ == tuple(UsageEvent.model_fields)
    assert set(BOUNDED_FIELDS) < set(UsageEvent.model_fields)  # a misspelt name would bound nothing


def test_a_batch_sealed_from_the_fast_path_opens_to_the_bytes_and_events_of_the_reference() -> None:
    body = orjson.dumps(
        {
            "events": [
                _valid(),
                _valid(event_id="e2", cost_usd=None, tags={}),
                _valid(event_id="e3", cost_usd=3, timestamp="2026-11-23T12:00:00Z"),
            ]
        }
    )
    checked = fastpath.check(body, NOW, MAX_AGE, _absent)
    reference = _reference(body)
    assert checked is not None and reference is not None
    key = os.urandom(32)
    envelope = seal(
        EncodedBatch(fastpath.encode(checked.events), len(checked.events)),
        workspace_id="ws_a",
        batch_id="b1",
        key=key,
        key_version=1,
        ingested_at=NOW,
    )
    assert envelope.event_count == 3
    assert open_plaintext(envelope, key) == EventBatch(events=reference).model_dump_json().encode()
    assert stored_events(open_plaintext(envelope, key))[0] == [SealedEvent.of(e) for e in reference]
