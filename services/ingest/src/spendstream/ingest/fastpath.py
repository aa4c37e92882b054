"""The fast path: a batch accepted straight from the request bytes when every event in it is valid.

It decides acceptance only. msgspec decodes and checks the body in C (STACK-FACTS §4: ~3x pydantic); the rest
(patterns, the time window, the token parts, the cost's decimal places, the privacy guard on tags) is checked
column by column over the whole batch. At the least doubt it answers None and the caller runs the reference
path (orjson, `guard.check_event` and `UsageEvent` through `validate_events`), which explains every refusal with
its index, field path, reason code and message. A batch with one bad event so costs both
paths; a clean one costs only this. tests/ingest/test_fastpath.py holds the two to the same verdicts and bytes.

The constraints (patterns, bounds, lengths) are `spendstream.common.events`' and the privacy rules the guard's,
imported, never restated; what is this module's own is how they are checked, column by column.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import chain
from typing import Annotated, Any

import msgspec
from msgspec.structs import astuple
from uuid_utils import uuid7

from spendstream.common.events import (
    BOUNDED_FIELDS,
    COST_DECIMAL_PLACES,
    EVENT_ID_MAX_LENGTH,
    MAX_COST_USD,
    MAX_EVENTS_PER_BATCH,
    MAX_FUTURE_SKEW,
    MODEL_PATTERN,
    PROVIDER_PATTERN,
    TAG_KEY_PATTERN,
    # The form of an accepted event is the one rollup reads back, field for field UsageEvent.model_dump_json
    # (the cost as its Decimal's text, the timestamp in UTC).
    SealedBatch,
    SealedEvent,
)
from spendstream.guard import all_clean, is_content_key, remember

# msgspec checks types, ranges and lengths while decoding. The patterns are checked afterwards, once per batch
# over a column (or once per distinct provider and model): a regex call per value from msgspec was a third of the
# decoding time, and even one regex over a joined column is slower than str methods in C.
# `\Z`, not `$`: Python's `$` also matches before a final newline, pydantic's (Rust) regex does not.
_PROVIDER = re.compile(PROVIDER_PATTERN + r"\Z")
_MODEL = re.compile(MODEL_PATTERN + r"\Z")
_TAG_KEY = re.compile(TAG_KEY_PATTERN + r"\Z")
# Timestamps stay strings for msgspec and datetime.fromisoformat reads them: msgspec's own datetime rounds digits
# past the microsecond where pydantic truncates them. Only the shapes both read alike are let through (digits
# written as `d`): a `T` or a space, at most 6 fraction digits, `Z` or a ±hh:mm offset. fromisoformat then
# refuses a leap second, 24:00 and an impossible date like pydantic; not an offset's minutes past 59, checked
# apart (_OFFSET).
_DIGITS = str.maketrans("0123456789", "dddddddddd")
_STAMP_SHAPES = frozenset(
    f"dddd-dd-dd{sep}dd:dd:dd{fraction}{zone}"
    for sep in "T "
    for zone in ("Z", "+dd:dd", "-dd:dd")
    for fraction in ["", *("." + "d" * n for n in range(1, 7))]
)
_OFFSET = re.compile(r"[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]\Z")
_LAST_SIX = operator.itemgetter(slice(-6, None))

# The request's form of the sealed event, derived from it (events.SealedEvent): the same fields in the same order,
# bounded as events.BOUNDED_FIELDS declares (msgspec's own int is strict like UsageEvent's: a JSON true, 1.0 or
# 1e3 is refused), the optional ones with their defaults, and three in the form a client sends them:
_AS_SENT: dict[str, tuple[Any, Any]] = {
    # UNSET when absent, None when null: the Kafka intake names the two differently (see `check`).
    "event_id": (str | None | msgspec.UnsetType, msgspec.UNSET),
    # A JSON integer stays an int and a fraction a float, as orjson hands them to pydantic: Decimal(5) is "5",
    # Decimal("5.0") is "5.0" in the sealed batch.
    "cost_usd": (int | float | None, None),
    "timestamp": (str, msgspec.NODEFAULT),  # see _STAMP_SHAPES
}
_OPTIONAL: dict[str, Any] = {"cached_input_tokens": None, "reasoning_tokens": None, "tags": {}}
# gc=False like SealedEvent: 500 more objects per request the cycle collector need not track.
_WireEvent = msgspec.defstruct(
    "_WireEvent",
    [
        (f.name, *_AS_SENT[f.name])
        if f.name in _AS_SENT
        else (f.name, BOUNDED_FIELDS.get(f.name, f.type), _OPTIONAL.get(f.name, msgspec.NODEFAULT))
        for f in msgspec.structs.fields(SealedEvent)
    ],
    forbid_unknown_fields=True,
    kw_only=True,
    gc=False,
)


_Body = msgspec.defstruct(
    "_Body",
    [("events", Annotated[list[_WireEvent], msgspec.Meta(min_length=1, max_length=MAX_EVENTS_PER_BATCH)])],  # type: ignore[valid-type]
    forbid_unknown_fields=True,
)


@dataclass(frozen=True, slots=True)
class CheckedBatch:
    """Every event of a request, found valid at `now` (the time the acceptor must also stamp the batch with)."""

    events: list[SealedEvent]
    now: datetime


class _Refused(Exception):
    """Some rule is not met: the reference path will say which."""


_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_Body)
_ENCODER = msgspec.json.Encoder()
_MAX_COST = Decimal(MAX_COST_USD)
_TZINFO = operator.attrgetter("tzinfo")

# Values already found acceptable: providers and models (their patterns), tag keys (the pattern, and not a content
# key). Clients repeat the same few, so a batch is usually checked with C-level set comparisons. Only accepted
# values are kept (they are stored anyway); bounded like the guard's memos (guard.remember). Tag values found
# clean are the guard's own memo (guard.all_clean), shared with the reference path.
_GOOD: dict[str, set[str]] = {"provider": set(), "model": set(), "zone": set(), "tag_key": set()}
_MEMO_MAX = 16_384


def _learn(kind: str, candidates: set[str], ok: Callable[[str], object]) -> None:
    memo = _GOOD[kind]
    for value in candidates - memo:
        if not ok(value):
            raise _Refused
        remember(memo, value, _MEMO_MAX)


def _is_tag_key(key: str) -> bool:
    return _TAG_KEY.match(key) is not None and not is_content_key(key)


def _is_zone(suffix: str) -> bool:
    # The last six characters of a timestamp of an allowed shape: `±hh:mm`, or the end of one in `Z`.
    return suffix[-1] == "Z" or _OFFSET.match(suffix) is not None


def _joined(values: Sequence[str]) -> str:
    """The values joined by newlines; raises _Refused when one holds a newline of its own (it would pass for
    two values below)."""
    joined = "\n".join(values)
    if joined.count("\n") != len(values) - 1:
        raise _Refused
    return joined


def _check_ids(ids: list[str]) -> None:
    """Each matches EVENT_ID_PATTERN, [A-Za-z0-9_-]{1,EVENT_ID_MAX_LENGTH}, checked with str methods in C."""
    if max(map(len, ids)) > EVENT_ID_MAX_LENGTH or min(map(len, ids)) < 1:
        raise _Refused
    rest = _joined(ids).replace("\n", "").replace("-", "").replace("_", "")
    if rest and not (rest.isascii() and rest.isalnum()):  # ASCII letters and digits
        raise _Refused


def _check_stamps(stamps: Sequence[str]) -> None:
    """Each has an allowed shape and a valid offset."""
    if not _STAMP_SHAPES.issuperset(_joined(stamps).translate(_DIGITS).split("\n")):
        raise _Refused
    _learn("zone", set(map(_LAST_SIX, stamps)), _is_zone)


def _cost_text(value: int | float | None) -> str | None:
    """The text of the Decimal pydantic makes of the number orjson read (from an int as is, from a float via its
    repr); raises _Refused when UsageEvent would refuse it: outside 0 … MAX_COST_USD, or more than
    COST_DECIMAL_PLACES decimal places."""
    if value is None:
        return None
    if type(value) is float:
        text = repr(value)
        # In positional notation a float's repr is its Decimal's text too (-0.0 included).
        if 0 <= value <= MAX_COST_USD and "e" not in text and len(text) - text.index(".") <= COST_DECIMAL_PLACES + 1:
            return text
    elif 0 <= value <= MAX_COST_USD:
        return str(value)
    cost = Decimal(repr(value))  # 1e-07 and the like
    exponent = cost.as_tuple().exponent
    # Pydantic counts places after normalising (trailing zeros do not count); this count without normalising only
    # ever refuses more, and the reference path then has the last word.
    if not 0 <= cost <= _MAX_COST or not isinstance(exponent, int) or exponent < -COST_DECIMAL_PLACES:
        raise _Refused
    return str(cost)


def check(body: bytes, now: datetime, max_age: timedelta, name_absent: Callable[[int], str]) -> CheckedBatch | None:
    """The batch, when the reference path would accept every event of it unchanged; otherwise None.

    An event without an `event_id` key is named `name_absent(index)`, one with `"event_id": null` a UUIDv7, as
    the callers' reference paths do (HTTP names both with a UUIDv7; the Kafka intake the first by coordinates).
    """
    try:
        wire = _DECODER.decode(body).events
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    # Column by column, each rule over the whole batch at once: C-level maps, set operations and str methods
    # instead of a Python loop per event.
    ids, providers, models, inputs, outputs, cached, reasoning, latencies, costs, stamps, tags = zip(
        *map(astuple, wire), strict=True
    )
    try:
        named = [i for i in ids if type(i) is str]
        if named:
            _check_ids(named)
        _learn("provider", set(providers), _PROVIDER.match)
        _learn("model", set(models), _MODEL.match)
        if cached.count(None) != len(cached) and any(
            c is not None and c > t for c, t in zip(cached, inputs, strict=True)
        ):
            return None
        if reasoning.count(None) != len(reasoning) and any(
            r is not None and r > t for r, t in zip(reasoning, outputs, strict=True)
        ):
            return None
        _check_stamps(stamps)
        instants = list(map(datetime.fromisoformat, stamps))
        if set(map(_TZINFO, instants)) != {UTC}:
            instants = [t.astimezone(UTC) for t in instants]  # OverflowError at the ends of the calendar
        if min(instants) < now - max_age or max(instants) > now + MAX_FUTURE_SKEW:
            return None
        cost_texts = list(map(_cost_text, costs))
        _learn("tag_key", set().union(*tags), _is_tag_key)
        if not all_clean(set(chain.from_iterable(map(dict.values, tags)))):
            return None
    except (_Refused, ValueError, OverflowError):  # ValueError: fromisoformat's calendar
        return None
    if len(named) != len(ids):
        ids = tuple(
            (str(uuid7()) if i is None else name_absent(index)) if type(i) is not str else i
            for index, i in enumerate(ids)
        )
    events = list(
        map(
            SealedEvent,
            ids,
            providers,
            models,
            inputs,
            outputs,
            cached,
            reasoning,
            latencies,
            cost_texts,
            instants,
            tags,
        )
    )
    return CheckedBatch(events, now)


def encode(events: list[SealedEvent]) -> bytes:
    """The JSON `EventBatch(events=...).model_dump_json()` writes for the same events, byte for byte."""
    return _ENCODER.encode(SealedBatch(events))
