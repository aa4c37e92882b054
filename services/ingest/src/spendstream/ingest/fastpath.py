"""The fast path: a batch accepted straight from the request bytes when every event in it is valid.

It decides acceptance only. msgspec decodes and checks the body in C (STACK-FACTS §4: ~3x pydantic); one Python
pass then does what msgspec cannot say (the time window, the token parts, the cost's decimal places, the privacy
guard on tags). At the least doubt it answers None and the caller runs the reference path (orjson,
`guard.check_event` and `UsageEvent` through `validate_events`), which explains every refusal with its index,
field path, reason code and message, exactly as before. A batch with one bad event so costs both paths; a clean
one costs only this. tests/ingest/test_fastpath.py holds the two to the same verdicts and the same bytes.

Every rule below mirrors one of `spendstream.common.events.UsageEvent` (and of the guard); change them together.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated

import msgspec
from uuid_utils import uuid7

from spendstream.common.events import MAX_EVENTS_PER_BATCH, MAX_FUTURE_SKEW, MAX_TAG_VALUE_LENGTH, MAX_TAGS, MAX_TOKENS
from spendstream.common.guard import is_content_key, pii_kind

# `\Z`, not `$`: Python's `$` also matches before a final newline, pydantic's (Rust) regex does not.
_EventId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}\Z")]
_Provider = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9._-]{1,64}\Z")]
_Model = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:/@-]{1,128}\Z")]
# msgspec's own int is strict like UsageEvent's: a JSON true, 1.0 or 1e3 is refused.
_Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
_Latency = Annotated[int, msgspec.Meta(ge=0, le=3_600_000)]
# The timestamp stays a string here and datetime.fromisoformat reads it: msgspec's own datetime rounds digits
# past the microsecond where pydantic truncates them. The pattern admits only what both read alike (no leap
# second, no 24:00, offsets up to 23:59, at most 6 fraction digits); the calendar is fromisoformat's to check.
_Timestamp = Annotated[str, msgspec.Meta(
    pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
            r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])\Z")]
_TagValue = Annotated[str, msgspec.Meta(max_length=MAX_TAG_VALUE_LENGTH)]
_Tags = Annotated[dict[str, _TagValue], msgspec.Meta(max_length=MAX_TAGS)]


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # UNSET when absent, None when null: the Kafka intake names the two differently (see `check`).
    event_id: _EventId | None | msgspec.UnsetType = msgspec.UNSET
    provider: _Provider
    model: _Model
    input_tokens: _Tokens
    output_tokens: _Tokens
    cached_input_tokens: _Tokens | None = None
    reasoning_tokens: _Tokens | None = None
    latency_ms: _Latency
    # A JSON integer stays an int and a fraction a float, as orjson hands them to pydantic: Decimal(5) is "5",
    # Decimal("5.0") is "5.0" in the sealed batch.
    cost_usd: int | float | None = None
    timestamp: _Timestamp
    tags: _Tags = {}


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[list[_WireEvent], msgspec.Meta(min_length=1, max_length=MAX_EVENTS_PER_BATCH)]


class SealedEvent(msgspec.Struct):
    """An accepted event as `UsageEvent.model_dump_json` writes it: same fields in the same order."""

    event_id: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int | None
    reasoning_tokens: int | None
    latency_ms: int
    cost_usd: Decimal | None
    timestamp: datetime
    tags: dict[str, str]


class _SealedBatch(msgspec.Struct):
    events: list[SealedEvent]


@dataclass(frozen=True, slots=True)
class CheckedBatch:
    """Every event of a request, found valid at `now` (the time the acceptor must also stamp the batch with)."""

    events: list[SealedEvent]
    now: datetime


_DECODER = msgspec.json.Decoder(_Body)
_ENCODER = msgspec.json.Encoder()
_TAG_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_MAX_COST = Decimal(1_000_000)

# Tag keys and values already found acceptable (the tag-key pattern and not a content key; not PII-looking).
# Clients repeat the same few, so most events are checked with two C-level set comparisons. Only accepted ones
# are kept (they are stored anyway); bounded, a full memo starts over, so what clients send cannot grow it.
_GOOD_KEYS: set[str] = set()
_GOOD_VALUES: set[str] = set()
_MEMO_MAX = 16_384


def _tags_ok(tags: dict[str, str]) -> bool:
    for key in tags.keys() - _GOOD_KEYS:
        if not _TAG_KEY.fullmatch(key) or is_content_key(key):
            return False
        _remember(_GOOD_KEYS, key)
    for value in set(tags.values()) - _GOOD_VALUES:
        if pii_kind(value) is not None:
            return False
        _remember(_GOOD_VALUES, value)
    return True


def _remember(memo: set[str], value: str) -> None:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo.add(value)


def _cost(value: int | float) -> Decimal | None:
    """The Decimal pydantic makes of the number orjson read (from an int as is, from a float via its repr), or
    None when UsageEvent would refuse it: outside 0 … 10⁶, or more than 12 decimal places."""
    cost = Decimal(value) if type(value) is int else Decimal(repr(value))
    exponent = cost.as_tuple().exponent
    # Pydantic counts places after normalising (trailing zeros do not count); this conservative count without
    # normalising only ever refuses more, and the reference path then has the last word.
    if not 0 <= cost <= _MAX_COST or not isinstance(exponent, int) or exponent < -12:
        return None
    return cost


def check(body: bytes, now: datetime, max_age: timedelta, name_absent: Callable[[int], str]) -> CheckedBatch | None:
    """The batch, when the reference path would accept every event of it unchanged; otherwise None.

    An event without an `event_id` key is named `name_absent(index)`, one with `"event_id": null` a UUIDv7, as
    the callers' reference paths do (HTTP names both with a UUIDv7; the Kafka intake the first by coordinates).
    """
    try:
        wire = _DECODER.decode(body).events
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    earliest, latest = now - max_age, now + MAX_FUTURE_SKEW
    fromisoformat = datetime.fromisoformat
    good_keys, good_values = _GOOD_KEYS, _GOOD_VALUES
    events: list[SealedEvent] = []
    append = events.append
    try:
        for index, ev in enumerate(wire):
            stamp = fromisoformat(ev.timestamp)
            if stamp.tzinfo is not UTC:
                stamp = stamp.astimezone(UTC)  # OverflowError at the ends of the calendar
            if not earliest <= stamp <= latest:
                return None
            cached, reasoning = ev.cached_input_tokens, ev.reasoning_tokens
            if (cached is not None and cached > ev.input_tokens) or (
                    reasoning is not None and reasoning > ev.output_tokens):
                return None
            cost = None
            if ev.cost_usd is not None:
                cost = _cost(ev.cost_usd)
                if cost is None:
                    return None
            tags = ev.tags
            if not (good_keys.issuperset(tags) and good_values.issuperset(tags.values())) and not _tags_ok(tags):
                return None
            event_id = ev.event_id
            if event_id is None:
                event_id = str(uuid7())
            elif event_id is msgspec.UNSET:
                event_id = name_absent(index)
            append(SealedEvent(event_id, ev.provider, ev.model,
                               ev.input_tokens, ev.output_tokens, cached, reasoning, ev.latency_ms, cost, stamp,
                               tags))
    except (ValueError, OverflowError):  # fromisoformat's calendar, astimezone's range: the reference explains
        return None
    return CheckedBatch(events, now)


def encode(events: list[SealedEvent]) -> bytes:
    """The JSON `EventBatch(events=...).model_dump_json()` writes for the same events, byte for byte."""
    return _ENCODER.encode(_SealedBatch(events))
