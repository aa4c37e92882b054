"""One usage event as the SDK builds it at `track()`: checked against the server's simple rules and the same privacy
guard ingest runs, so a programming error raises at the call site and never leaves the process.

The rules mirror the event contract of the server (README, "The front door"); the SDK does not import the
server's packages, so the few numbers are repeated here. A refusal names the field and the rule, never the value.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from spendstream.guard import check_event, path_segment

MAX_TOKENS = 1_000_000_000
MAX_LATENCY_MS = 3_600_000
MAX_COST_USD = 1_000_000
MAX_TAGS = 24
MAX_TAG_VALUE_LENGTH = 120
EVENT_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
TAG_KEY_PATTERN = r"[a-z][a-z0-9_.-]{0,63}"

_EVENT_ID = re.compile(EVENT_ID_PATTERN + r"\Z")
_PROVIDER = re.compile(r"[a-z0-9._-]{1,64}\Z")
_MODEL = re.compile(r"[A-Za-z0-9._:/@-]{1,128}\Z")
_TAG_KEY = re.compile(TAG_KEY_PATTERN + r"\Z")

# The optional token fields, each with the total it is a part of (None: a part of no other field).
OPTIONAL_TOKEN_FIELDS: tuple[tuple[str, str], ...] = (
    ("cached_input_tokens", "input_tokens"),
    ("reasoning_tokens", "output_tokens"),
    ("cache_creation_input_tokens", "input_tokens"),
    ("cache_creation_1h_input_tokens", "cache_creation_input_tokens"),
)


class EventRefused(ValueError):
    """An event the server would refuse, raised by `track()` before anything is queued. `field` is the field's
    path (`tags.customer`, `?` for a key that is not a plain name), `code` the rule; the value is never shown."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(f"{field}: {code}: {message}")
        self.field = field
        self.code = code


# Values already found valid, so the common case (the same few providers, models and tag keys on every call) costs
# one set lookup instead of a regular expression. Each is a pure function of the string, so remembering is exact.
# Bounded: a full memo starts over, so an app sending ever new names cannot grow it.
_MEMO_MAX = 4096
_VALID_PROVIDERS: set[str] = set()
_VALID_MODELS: set[str] = set()
_VALID_TAG_KEYS: set[str] = set()


def _matches(memo: set[str], pattern: re.Pattern[str], value: str) -> bool:
    if value in memo:
        return True
    if pattern.match(value) is None:
        return False
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo.add(value)
    return True


def _name(memo: set[str], pattern: re.Pattern[str], field: str, value: object) -> str:
    if type(value) is not str:
        raise EventRefused(field, "invalid_value", "value must be a string")
    if not _matches(memo, pattern, value):
        raise EventRefused(field, "invalid_format", "value does not match the allowed characters and length")
    return value


def _count(field: str, value: object, maximum: int) -> int:
    if type(value) is not int:  # bool is an int subclass: the server refuses true as a count, so does this
        raise EventRefused(field, "invalid_value", "value must be an integer")
    if not 0 <= value <= maximum:
        raise EventRefused(field, "out_of_range", f"value must be within 0 … {maximum:,}")
    return value


def check_tags(tags: Mapping[str, str]) -> None:
    """Raise EventRefused unless `tags` has at most MAX_TAGS string values of at most MAX_TAG_VALUE_LENGTH
    characters under keys matching TAG_KEY_PATTERN (the PII check is the guard's, in `check`)."""
    if len(tags) > MAX_TAGS:
        raise EventRefused("tags", "too_many_tags", f"at most {MAX_TAGS} tags are allowed")
    for key, value in tags.items():
        if type(key) is not str or not _matches(_VALID_TAG_KEYS, _TAG_KEY, key):
            raise EventRefused(f"tags.{path_segment(key)}", "invalid_tag_key", f"tag keys match {TAG_KEY_PATTERN}")
        if type(value) is not str:
            raise EventRefused(f"tags.{key}", "invalid_value", "tag values are strings")
        if len(value) > MAX_TAG_VALUE_LENGTH:
            raise EventRefused(f"tags.{key}", "too_long", f"tag values are at most {MAX_TAG_VALUE_LENGTH} characters")


def check(event: dict[str, Any]) -> None:
    """The privacy guard over the whole event (content keys at any depth, PII-looking tag values)."""
    violations = check_event(event)
    if violations:
        first = violations[0]
        raise EventRefused(first.field, first.code, first.message)


def cost(value: object) -> float | int:
    """A cost the server accepts: a finite JSON number within 0 … MAX_COST_USD (at most 12 decimal places, which
    the server checks; a float's shortest repr is what is sent)."""
    if type(value) is int or type(value) is float:
        if 0 <= value <= MAX_COST_USD:  # NaN fails both comparisons
            return value
        raise EventRefused("cost_usd", "out_of_range", f"value must be within 0 … {MAX_COST_USD:,}")
    raise EventRefused("cost_usd", "invalid_value", "value must be a number (int or float)")


def iso_timestamp(value: object) -> str:
    """A timezone-aware datetime as the ISO-8601 text the server reads."""
    if not isinstance(value, datetime):
        raise EventRefused("timestamp", "invalid_timestamp", "timestamp must be a datetime")
    if value.utcoffset() is None:
        raise EventRefused("timestamp", "invalid_timestamp", "timestamp must be timezone-aware (e.g. tzinfo=UTC)")
    return value.isoformat()


def event_id(value: object) -> str:
    if type(value) is not str or _EVENT_ID.match(value) is None:
        raise EventRefused("event_id", "invalid_format", f"event ids match {EVENT_ID_PATTERN}")
    return value


def build(
    provider: object,
    model: object,
    input_tokens: object,
    output_tokens: object,
    latency_ms: object,
    optional: Mapping[str, object],
    tags: dict[str, str],
) -> dict[str, Any]:
    """The event's fields (all but `event_id` and `timestamp`, which the caller adds) after every rule: the types,
    the patterns, the token parts within their totals, the tags; then the guard. `optional` holds only the fields
    that are not None."""
    event: dict[str, Any] = {
        "provider": _name(_VALID_PROVIDERS, _PROVIDER, "provider", provider),
        "model": _name(_VALID_MODELS, _MODEL, "model", model),
        "input_tokens": _count("input_tokens", input_tokens, MAX_TOKENS),
        "output_tokens": _count("output_tokens", output_tokens, MAX_TOKENS),
        "latency_ms": _count("latency_ms", latency_ms, MAX_LATENCY_MS),
    }
    if optional:
        for field, _total in OPTIONAL_TOKEN_FIELDS:
            if field in optional:
                event[field] = _count(field, optional[field], MAX_TOKENS)
        for field, total in OPTIONAL_TOKEN_FIELDS:
            if field in event and total in event and event[field] > event[total]:
                raise EventRefused(field, "inconsistent_tokens", f"{field} is part of {total} and cannot exceed it")
        if "service_tier" in optional:
            event["service_tier"] = _name(_VALID_MODELS, _MODEL, "service_tier", optional["service_tier"])
        if "reservation_id" in optional:
            event["reservation_id"] = event_id(optional["reservation_id"])
        if "cost_usd" in optional:
            event["cost_usd"] = cost(optional["cost_usd"])
    if tags:
        check_tags(tags)
        event["tags"] = tags
    check(event)
    return event


class IdMaker:
    """UUIDv7-shaped ids (32 hex digits: 48 bits of Unix milliseconds, version 7, variant, then a per-process
    random part and a counter), made without a system call per id. Unique within a process by the counter and
    across processes by the random part, which a forked child draws anew (`reseed`)."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self._random = secrets.randbits(32)
        self._counter = itertools.count(secrets.randbits(20))

    def __call__(self) -> str:
        # 48 bits ms | 4 bits version | 12 bits counter high | 2 bits variant | 30 bits counter low | 32 random
        n = next(self._counter) & 0x3FF_FFFF_FFFF  # 42 bits
        return "%012x7%03x%08x%08x" % (  # noqa: UP031 (one C-level format: the fastest spelling)
            time.time_ns() // 1_000_000,
            n >> 30,
            0x8000_0000 | (n & 0x3FFF_FFFF),
            self._random,
        )
