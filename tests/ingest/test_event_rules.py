"""The usage event's rules as decision tables: for each spelling of a field a client may send, the one verdict
of both passes over the rules (spendstream.common.events): the sealed value, or the refusal's field and code.

`_verdict` runs a one-event batch through ingest's fast path (fastpath.check, from the bytes) and through
validate_events (the explanation, event by event) and asserts they agree: the fast path accepts exactly what
validate_events accepts here, and seals the same bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import orjson
import pytest

from spendstream.common.events import encode, validate_events
from spendstream.ingest import fastpath

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(days=372)


def _text(value: Any) -> str:
    return orjson.dumps(value).decode()


@contextmanager
def numbered_uuids() -> Iterator[None]:
    """Server-assigned ids as u0, u1, … so the two passes' events compare byte for byte."""
    counter = itertools.count()
    with (
        patch("spendstream.ingest.fastpath.uuid7", lambda: f"u{next(counter)}"),
        patch("spendstream.common.events.uuid_utils.uuid7", lambda: f"u{next(counter)}"),
    ):
        yield


def absent(index: int) -> str:
    return f"absent-{index}"


def fast(body: bytes) -> bytes | None:
    """The plaintext the fast path seals for `body`, or None when it leaves the batch to validate_events."""
    with numbered_uuids():
        checked = fastpath.check(body, NOW, MAX_AGE, absent)
    return None if checked is None else encode(checked.events)


def explained(body: bytes) -> tuple[bytes, list[tuple[int, str, str]]]:
    """What validate_events seals of `body`'s events and what it refuses (index, field, code), the events named
    as the callers name them."""
    events: list[Any] = orjson.loads(body)["events"]
    for index, event in enumerate(events):
        if isinstance(event, dict) and "event_id" not in event:
            event["event_id"] = absent(index)
    with numbered_uuids():
        result = validate_events(events, NOW, MAX_AGE)
    return encode(result.accepted), [(r.index, r.field, r.code) for r in result.rejected]


def verdict(body: bytes) -> bytes | list[tuple[int, str, str]]:
    """The one verdict of both passes on a batch: its sealed plaintext when every event is valid, else the
    refusals."""
    sealed, refused = explained(body)
    by_fast = fast(body)
    if refused:
        assert by_fast is None, "the fast path accepted a batch validate_events refuses"
        return refused
    assert by_fast == sealed, "the fast path left a valid batch to validate_events, or sealed other bytes"
    return sealed


BASE = {
    "event_id": '"e1"',
    "provider": '"openai"',
    "model": '"gpt-4o"',
    "input_tokens": "10",
    "output_tokens": "2",
    "latency_ms": "5",
    "timestamp": '"2026-11-23T11:00:00.5+01:00"',
    "cost_usd": "0.25",
    "tags": '{"feature":"chat"}',
}


def _event(field: str, text: str) -> str:
    """A valid event as JSON text, with `field` spelt `text` (a key `tags.k` is tag k's value; `tag key` puts
    `text` as a tag's key)."""
    fields = dict(BASE)
    if field == "tag key":
        fields["tags"] = "{" + text + ':"x"}'
    elif field.startswith("tags."):
        fields["tags"] = "{" + _text(field.removeprefix("tags.")) + ":" + text + "}"
    else:
        fields[field] = text
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


# The optional fields after `tags` are sealed only when set (SealedEvent's omit_defaults).
OMITTED_WHEN_NULL = ("cache_creation_input_tokens", "cache_creation_1h_input_tokens", "service_tier", "reservation_id")


class Refused(tuple[str, str]):
    """The expected refusal: field path and reason code."""


def _no(field: str, code: str) -> Refused:
    return Refused((field, code))


def _decide(field: str, text: str) -> Any:
    """The sealed value of the field (the tags for a tag), or the refusal as a Refused."""
    result = verdict(("{" + '"events":[' + _event(field, text) + "]}").encode())
    if isinstance(result, list):
        assert len(result) == 1, result
        return Refused(result[0][1:])
    sealed = orjson.loads(result)["events"][0]
    if field in OMITTED_WHEN_NULL:
        return sealed.get(field)
    return sealed["tags" if field.startswith("tag") else field]


def _cases(field: str, table: list[tuple[str, Any]]) -> list[Any]:
    return [pytest.param(field, text, expected, id=f"{field}={text[:40]}") for text, expected in table]


_BAD_STAMP = _no("timestamp", "invalid_timestamp")
# Timestamps: ISO-8601 with a UTC offset, `T` or a space, `Z` or ±hh:mm, up to 9 fraction digits (dropped past
# the microsecond), sealed in UTC.
TIMESTAMPS = [
    ('"2026-11-23T12:00:00Z"', "2026-11-23T12:00:00Z"),
    ('"2026-11-23 12:00:00Z"', "2026-11-23T12:00:00Z"),
    ('"2026-11-23T12:00:00-00:00"', "2026-11-23T12:00:00Z"),
    ('"2026-11-23T12:00:00.000000Z"', "2026-11-23T12:00:00Z"),
    ('"2026-11-23T12:00:00.5+05:30"', "2026-11-23T06:30:00.500000Z"),
    ('"2026-11-23T11:00:00-01:00"', "2026-11-23T12:00:00Z"),
    ('"2026-11-23 12:00:00.123+00:00"', "2026-11-23T12:00:00.123000Z"),
    # Go's RFC3339Nano, Java's Instant.toString: 7 to 9 digits, truncated (never rounded up)
    ('"2026-11-23T12:00:00.1234567Z"', "2026-11-23T12:00:00.123456Z"),
    ('"2026-11-23T12:00:00.123456789+00:00"', "2026-11-23T12:00:00.123456Z"),
    ('"2026-11-23T12:00:00.9999999Z"', "2026-11-23T12:00:00.999999Z"),
    ('"2026-11-23T12:00:00.1234567891Z"', _BAD_STAMP),  # 10 digits
    # the window: 5 minutes ahead and the retention window back, both inclusive
    ('"2026-11-23T12:05:00+00:00"', "2026-11-23T12:05:00Z"),
    ('"2026-11-23T12:05:00.000001+00:00"', _no("timestamp", "timestamp_in_future")),
    ('"2025-11-16T12:00:00+00:00"', "2025-11-16T12:00:00Z"),
    ('"2025-11-16T11:59:59.999999+00:00"', _no("timestamp", "timestamp_too_old")),
    ('"2026-11-30T12:00:00Z"', _no("timestamp", "timestamp_in_future")),
    ('"2024-11-23T12:00:00Z"', _no("timestamp", "timestamp_too_old")),
    # outside the contract's shapes
    ('"2026-11-23T12:00:00"', _BAD_STAMP),  # no offset
    ('"2026-11-23t12:00:00z"', _BAD_STAMP),
    ('"2026-11-23T12:00:00+0100"', _BAD_STAMP),
    ('"2026-11-23T12:00Z"', _BAD_STAMP),
    ('"20261123T120000Z"', _BAD_STAMP),
    ('"2026-11-23T12:00:00.Z"', _BAD_STAMP),
    ('"2026-11-23_12:00:00Z"', _BAD_STAMP),
    ('"2026-11-23T12:00:00,5Z"', _BAD_STAMP),
    ('"2026-11-23T12:00:00+01:00:30"', _BAD_STAMP),
    ('"\uff12026-11-23T12:00:00Z"', _BAD_STAMP),
    ('"2026-11-23T12:00:00Z\\n"', _BAD_STAMP),
    ('"2026-11-23T12:00:00+00:00 "', _BAD_STAMP),
    # the right shape, no instant
    ('"2026-11-23T12:00:60Z"', _BAD_STAMP),
    ('"2026-11-23T24:00:00Z"', _BAD_STAMP),
    ('"2026-02-29T00:00:00Z"', _BAD_STAMP),
    ('"2026-11-23T12:00:00+24:00"', _BAD_STAMP),
    ('"2026-11-23T12:00:00+01:60"', _BAD_STAMP),
    ('"0001-01-01T00:00:00+01:00"', _BAD_STAMP),
    ('"9999-12-31T23:59:59-01:00"', _BAD_STAMP),
    # not a string: a Unix time is refused, in seconds as a number or as text
    ("1795000000", _BAD_STAMP),
    ("1700000000", _BAD_STAMP),
    ('"1795000000"', _BAD_STAMP),
    ("null", _BAD_STAMP),
    ("true", _BAD_STAMP),
]

EVENT_IDS = [
    ('"A-z_09"', "A-z_09"),
    (_text("a" * 64), "a" * 64),
    ("null", "u0"),  # null: a UUIDv7 (numbered in these tests)
    ('""', _no("event_id", "invalid_format")),
    (_text("a" * 65), _no("event_id", "invalid_format")),
    ('"a\\n"', _no("event_id", "invalid_format")),
    ('"a b"', _no("event_id", "invalid_format")),
    ('"\u00e9"', _no("event_id", "invalid_format")),
    ("12", _no("event_id", "invalid_value")),
]
PROVIDERS = [
    ('"a.b-c_d"', "a.b-c_d"),
    (_text("x" * 64), "x" * 64),
    ('"OpenAI"', _no("provider", "invalid_format")),
    ('"openai\\n"', _no("provider", "invalid_format")),
    ('""', _no("provider", "invalid_format")),
    (_text("x" * 65), _no("provider", "invalid_format")),
    ("1", _no("provider", "invalid_value")),
    ("null", _no("provider", "invalid_value")),
]
MODELS = [
    ('"a/b:c@d._-"', "a/b:c@d._-"),
    (_text("m" * 128), "m" * 128),
    ('"gpt 4"', _no("model", "invalid_format")),
    ('"gpt-4o\\n"', _no("model", "invalid_format")),
    (_text("m" * 129), _no("model", "invalid_format")),
    ('"\u00b5"', _no("model", "invalid_format")),
]


def _counts(field: str, high: int) -> list[tuple[str, Any]]:
    """Integers 0 … high: a JSON integer only (never a boolean, a fraction, an exponent or a string)."""
    return [
        (str(high), high),
        ("0", 0),
        ("-0", 0),
        (str(high + 1), _no(field, "out_of_range")),
        ("-1", _no(field, "out_of_range")),
        ("1" + "0" * 25, _no(field, "invalid_value")),
        *((text, _no(field, "invalid_value")) for text in ("1.0", "5.0", "1e3", "1E2", "true", "false", '"5"', "null")),
    ]


def _parts(field: str) -> list[tuple[str, Any]]:
    return [
        ("null", None),
        ("0", 0),
        ("-1", _no(field, "out_of_range")),
        ("1000000001", _no(field, "out_of_range")),
        *((text, _no(field, "invalid_value")) for text in ("1.0", "true", '"1"')),
    ]


# The sealed cost is the text of the decimal the JSON number names: an integer as is, a fraction as its float's
# shortest repr.
COSTS = [
    ("5", "5"),
    ("5.0", "5.0"),
    ("-0", "0"),
    ("-0.0", "-0.0"),
    ("1E-7", "1E-7"),
    ("1e-12", "1E-12"),
    ("0.1e1", "1.0"),
    ("1e6", "1000000.0"),
    ("1000000", "1000000"),
    ("123.000", "123.0"),
    ("0.10000000000000001", "0.1"),
    ("0.123456789012", "0.123456789012"),
    ("null", None),
    ("1000000.0000001", _no("cost_usd", "out_of_range")),
    ("1000000.5", _no("cost_usd", "out_of_range")),
    ("1" + "0" * 25, _no("cost_usd", "out_of_range")),
    ("-0.01", _no("cost_usd", "out_of_range")),
    ("1e-13", _no("cost_usd", "invalid_value")),  # 13 decimal places
    ("1.5e-12", _no("cost_usd", "invalid_value")),
    ("0.1234567890123", _no("cost_usd", "invalid_value")),
    ("true", _no("cost_usd", "invalid_value")),
    # a JSON number only: a numeric string is refused
    ('"0.5"', _no("cost_usd", "invalid_value")),
    ('"1e3"', _no("cost_usd", "invalid_value")),
    ('"NaN"', _no("cost_usd", "invalid_value")),
]

SERVICE_TIERS = [
    *((_text(tier), tier) for tier in ("default", "flex", "priority", "scale", "batch")),
    ('"on_demand-2"', "on_demand-2"),  # a provider's own tier matching the pattern is kept
    (_text("t" * 32), "t" * 32),
    ("null", None),
    (_text("t" * 33), _no("service_tier", "invalid_format")),
    ('""', _no("service_tier", "invalid_format")),
    ('"Flex"', _no("service_tier", "invalid_format")),
    ('"flex "', _no("service_tier", "invalid_format")),
    ('"flex\\n"', _no("service_tier", "invalid_format")),
    ('"a.b"', _no("service_tier", "invalid_format")),
    ("1", _no("service_tier", "invalid_value")),
    ("true", _no("service_tier", "invalid_value")),
]
# a reservation id has an event id's pattern; null or absent: the call settles no reservation
RESERVATION_IDS = [
    ('"rsv_A-z09"', "rsv_A-z09"),
    (_text("r" * 64), "r" * 64),
    ("null", None),
    ('""', _no("reservation_id", "invalid_format")),
    (_text("r" * 65), _no("reservation_id", "invalid_format")),
    ('"r 1"', _no("reservation_id", "invalid_format")),
    ('"r\\n"', _no("reservation_id", "invalid_format")),
    ('"\u00e9"', _no("reservation_id", "invalid_format")),
    ("12", _no("reservation_id", "invalid_value")),
]

TAG_KEYS = [
    ('"feature"', {"feature": "x"}),
    ('"a.b-c_d"', {"a.b-c_d": "x"}),
    (_text("a" * 64), {"a" * 64: "x"}),
    ('"output_tokens"', {"output_tokens": "x"}),  # a numeric field's name, not content
    ('"context_window"', {"context_window": "x"}),
    ('"prompt_text"', _no("tags.prompt_text", "content_field")),
    ('"messages"', _no("tags.messages", "content_field")),
    ('"systemPrompt"', _no("tags.systemPrompt", "content_field")),
    ('"input"', _no("tags.input", "content_field")),
    ('"user.message"', _no("tags.user.message", "content_field")),
    ('"Feature"', _no("tags.Feature", "invalid_tag_key")),
    ('"1a"', _no("tags.?", "invalid_tag_key")),  # never echoed: not a name the schema could accept
    (_text("a" * 65), _no("tags.?", "invalid_tag_key")),
    ('"caf\u00e9"', _no("tags.?", "invalid_tag_key")),
    ('""', _no("tags.?", "invalid_tag_key")),
    ('"Bad Key"', _no("tags.?", "invalid_tag_key")),
    ('"jane.roe@example.com"', _no("tags.?", "invalid_tag_key")),
    ('"4111111111111111"', _no("tags.?", "invalid_tag_key")),
]
TAG_VALUES = [
    ('"prod"', {"owner": "prod"}),
    ('"cust-42"', {"owner": "cust-42"}),
    ('""', {"owner": ""}),
    (_text("v" * 120), {"owner": "v" * 120}),
    (_text("\U0001f600" * 120), {"owner": "\U0001f600" * 120}),  # characters, not bytes
    ('"\\u0000"', {"owner": "\x00"}),
    ('"\\ud83d\\ude00"', {"owner": "\U0001f600"}),
    (_text("v" * 121), _no("tags.owner", "too_long")),
    (_text("\U0001f600" * 121), _no("tags.owner", "too_long")),
    ('"bob@example.com"', _no("tags.owner", "pii_value")),
    ('"+1 415 555 0100"', _no("tags.owner", "pii_value")),
    ('"10.0.0.1"', _no("tags.owner", "pii_value")),
    ('"2001:db8::1"', _no("tags.owner", "pii_value")),
    ('"4111 1111 1111 1111"', _no("tags.owner", "pii_value")),
    ("3", _no("tags.owner", "invalid_value")),
    ("null", _no("tags.owner", "invalid_value")),
    ('["x"]', _no("tags.owner", "invalid_value")),
    ('{"prompt":"x"}', _no("tags.owner.prompt", "content_field")),
]
TAGS = [
    ("{}", {}),
    ("{" + ",".join(f'"t{i}":"v"' for i in range(24)) + "}", {f"t{i}": "v" for i in range(24)}),
    ("{" + ",".join(f'"t{i}":"v"' for i in range(25)) + "}", _no("tags", "too_many_tags")),
    ("null", _no("tags", "invalid_value")),
    ("[]", _no("tags", "invalid_value")),
]
OTHER_KEYS = [
    ("workspace_id", '"ws_x"', _no("workspace_id", "forbidden_field")),
    ("prompt", '"x"', _no("prompt", "content_field")),
    ("messages", "[]", _no("messages", "content_field")),
    ("messages", '[{"role":"user"}]', _no("messages", "content_field")),
    ("systemPrompt", '"x"', _no("systemPrompt", "content_field")),
    ("extra", "1", _no("extra", "unknown_field")),
    ("jane.roe@example.com", "1", _no("?", "unknown_field")),
    ("extra", '{"deep":[{"completion_text":"x"}]}', _no("extra.deep[0].completion_text", "content_field")),
]

FIELD_CASES = [
    *_cases("timestamp", TIMESTAMPS),
    *_cases("event_id", EVENT_IDS),
    *_cases("provider", PROVIDERS),
    *_cases("model", MODELS),
    *_cases("input_tokens", _counts("input_tokens", 10**9)),
    *_cases("output_tokens", _counts("output_tokens", 10**9)),
    *_cases("latency_ms", _counts("latency_ms", 3_600_000)),
    *_cases("cached_input_tokens", _parts("cached_input_tokens")),
    *_cases("reasoning_tokens", _parts("reasoning_tokens")),
    *_cases("cache_creation_input_tokens", _parts("cache_creation_input_tokens")),
    *_cases("service_tier", SERVICE_TIERS),
    *_cases("reservation_id", RESERVATION_IDS),
    *_cases("cost_usd", COSTS),
    *_cases("tag key", TAG_KEYS),
    *_cases("tags.owner", TAG_VALUES),
    *_cases("tags", TAGS),
    *(pytest.param(key, text, expected, id=f"{key}={text}") for key, text, expected in OTHER_KEYS),
]


@pytest.mark.parametrize(("field", "text", "expected"), FIELD_CASES)
def test_each_spelling_of_a_field_has_one_verdict(field: str, text: str, expected: Any) -> None:
    assert _decide(field, text) == expected


def _body(*events: str) -> bytes:
    return ('{"events":[' + ",".join(events) + "]}").encode()


_VALID = _event("event_id", '"e1"')


def _tokens(**parts: Any) -> str:
    """A valid event (10 input tokens) with the given optional fields."""
    return _VALID[:-1] + "".join(f',"{name}":{_text(value)}' for name, value in parts.items()) + "}"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        # the token parts: cached within input, reasoning within output (inclusive)
        (_event("cached_input_tokens", "10"), None),
        (_event("cached_input_tokens", "11"), [(0, "", "inconsistent_tokens")]),
        (_event("reasoning_tokens", "2"), None),
        (_event("reasoning_tokens", "3"), [(0, "", "inconsistent_tokens")]),
        # cache reads and cache writes are disjoint parts of the input: together within it (input_tokens is 10)
        (_tokens(cached_input_tokens=4, cache_creation_input_tokens=6), None),
        (_tokens(cached_input_tokens=5, cache_creation_input_tokens=6), [(0, "", "inconsistent_tokens")]),
        (_tokens(cache_creation_input_tokens=10), None),
        (_tokens(cache_creation_input_tokens=11), [(0, "", "inconsistent_tokens")]),
        (_tokens(cached_input_tokens=None, cache_creation_input_tokens=None), None),
        # the hour-long writes are a part of the cache writes, which they need
        (_tokens(cache_creation_input_tokens=6, cache_creation_1h_input_tokens=6), None),
        (_tokens(cache_creation_input_tokens=6, cache_creation_1h_input_tokens=0), None),
        (_tokens(cache_creation_input_tokens=6, cache_creation_1h_input_tokens=7), [(0, "", "inconsistent_tokens")]),
        (_tokens(cache_creation_1h_input_tokens=1), [(0, "", "inconsistent_tokens")]),
        (_tokens(cache_creation_1h_input_tokens=0), [(0, "", "inconsistent_tokens")]),
        (_tokens(cache_creation_input_tokens=None, cache_creation_1h_input_tokens=None), None),
        (_tokens(cache_creation_1h_input_tokens=-1), [(0, "cache_creation_1h_input_tokens", "out_of_range")]),
        (_tokens(cache_creation_1h_input_tokens=1.0), [(0, "cache_creation_1h_input_tokens", "invalid_value")]),
        # a part larger than its whole is checked only once each field has its type
        (
            _tokens(cache_creation_input_tokens=11, service_tier="Flex"),
            [(0, "service_tier", "invalid_format")],
        ),
        # a missing required field; the optional ones may be absent
        (
            '{"provider":"openai","input_tokens":1,"output_tokens":1,"latency_ms":1,"timestamp":"2026-11-23T12:00:00Z"}',
            [(0, "model", "missing_field")],
        ),
        (
            '{"provider":"openai","model":"m","input_tokens":1,"output_tokens":1,"latency_ms":1,'
            '"timestamp":"2026-11-23T12:00:00Z"}',
            None,
        ),
        # a duplicate key: the last one counts
        (_VALID[:-1] + ',"provider":"OpenAI"}', [(0, "provider", "invalid_format")]),
        ('{"provider":"OpenAI",' + _VALID[1:], None),
        # not an object
        ('"not an object"', [(0, "", "invalid_event")]),
        ("1", [(0, "", "invalid_event")]),
        # several errors of one event are each listed, in the order of the fields
        (
            '{"provider":"OpenAI","model":"m","input_tokens":-1,"output_tokens":1,"latency_ms":1.5,'
            '"timestamp":"2026-11-23T12:00:00","colour":1}',
            [
                (0, "provider", "invalid_format"),
                (0, "input_tokens", "out_of_range"),
                (0, "latency_ms", "invalid_value"),
                (0, "timestamp", "invalid_timestamp"),
                (0, "colour", "unknown_field"),
            ],
        ),
        # the privacy guard answers first, alone
        (_event("prompt", '"x"')[:-1] + ',"provider":"OpenAI"}', [(0, "prompt", "content_field")]),
    ],
)
def test_composite_events_have_one_verdict(event: str, expected: list[tuple[int, str, str]] | None) -> None:
    result = verdict(_body(event))
    assert (None if isinstance(result, bytes) else result) == expected


def test_one_bad_event_refuses_only_itself() -> None:
    assert verdict(_body(_VALID, _event("prompt", '"x"'), _VALID)) == [(1, "prompt", "content_field")]
    sealed, refused = explained(_body(_VALID, _event("prompt", '"x"'), _event("event_id", '"e2"')))
    assert [e["event_id"] for e in orjson.loads(sealed)["events"]] == ["e1", "e2"]
    assert refused == [(1, "prompt", "content_field")]
