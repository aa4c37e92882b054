"""One usage event as the SDK builds it at `track()`: checked against the server's simple rules and the same privacy
guard ingest runs, so a programming error raises at the call site and never leaves the process.

The rules mirror the event contract of the server (README, "The front door"); the SDK does not import the
server's packages, so the few numbers are repeated here. A refusal names the field and the rule, never the value.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
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

# The optional token fields, in the order the server checks them.
OPTIONAL_TOKEN_FIELDS = (
    "cached_input_tokens",
    "reasoning_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
)
SERVICE_TIER_PATTERN = r"[a-z0-9_-]{1,32}"
_SERVICE_TIER = re.compile(SERVICE_TIER_PATTERN + r"\Z")
COST_DECIMAL_PLACES = 12


class EventRefused(ValueError):
    """An event the server would refuse, raised by `track()` before anything is queued. `field` is the field's
    path (`tags.customer`, `?` for a key that is not a plain name), `code` the rule; the value is never shown."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(f"{field}: {code}: {message}")
        self.field = field
        self.code = code


# Values already found valid, so the common case (the same providers, models, tag keys and tag values on every
# call) costs a set lookup instead of a regular expression or the guard's detectors. Each verdict is a pure
# function of the string (the pattern; the guard's is_content_key and pii_kind), so remembering it is exact.
# Bounded: a full memo starts over, so an app sending ever new values cannot grow it.
_MEMO_MAX = 16_384
_VALID_PROVIDERS: set[str] = set()
_VALID_MODELS: set[str] = set()
_VALID_SERVICE_TIERS: set[str] = set()
_VALID_TAG_KEYS: set[str] = set()  # match TAG_KEY_PATTERN and the guard finds no content word in them
_VALID_TAG_VALUES: set[str] = set()  # strings of at most MAX_TAG_VALUE_LENGTH the guard finds no PII in
_GUARDED_FIELDS: set[str] = set()  # field names the guard accepts (an event's keys come from this module)


def _remember(memo: set[str], value: str) -> None:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo.add(value)


def _name(memo: set[str], pattern: re.Pattern[str], field: str, value: object) -> str:
    if type(value) is not str:
        raise EventRefused(field, "invalid_value", "value must be a string")
    if value not in memo:
        if pattern.match(value) is None:
            raise EventRefused(field, "invalid_format", "value does not match the allowed characters and length")
        _remember(memo, value)
    return value


def _count(field: str, value: object, maximum: int) -> int:
    if type(value) is not int:  # bool is an int subclass: the server refuses true as a count, so does this
        raise EventRefused(field, "invalid_value", "value must be an integer")
    if not 0 <= value <= maximum:
        raise EventRefused(field, "out_of_range", f"value must be within 0 … {maximum:,}")
    return value


def guard(event: dict[str, Any]) -> None:
    """Raise EventRefused on the first violation spendstream's privacy guard finds in `event` (content keys at
    any depth, PII-looking tag values), naming its field and reason, never its value."""
    violations = check_event(event)
    if violations:
        first = violations[0]
        raise EventRefused(first.field, first.code, first.message)


def check_tags(tags: Mapping[str, str]) -> None:
    """Raise EventRefused unless the server and its guard accept `tags`: at most MAX_TAGS string values of at
    most MAX_TAG_VALUE_LENGTH characters, under keys matching TAG_KEY_PATTERN, neither content-bearing keys nor
    PII-looking values."""
    try:
        if len(tags) <= MAX_TAGS and _VALID_TAG_KEYS.issuperset(tags) and _VALID_TAG_VALUES.issuperset(tags.values()):
            return  # every key and value already passed every rule below
    except TypeError:  # an unhashable value: the rules below name it
        pass
    guard({"tags": dict(tags)})  # first, as the server runs it: a content key is named as such
    if len(tags) > MAX_TAGS:
        raise EventRefused("tags", "too_many_tags", f"at most {MAX_TAGS} tags are allowed")
    for key, value in tags.items():
        if type(key) is not str or _TAG_KEY.match(key) is None:
            raise EventRefused(f"tags.{path_segment(key)}", "invalid_tag_key", f"tag keys match {TAG_KEY_PATTERN}")
        if type(value) is not str:
            raise EventRefused(f"tags.{key}", "invalid_value", "tag values are strings")
        if len(value) > MAX_TAG_VALUE_LENGTH:
            raise EventRefused(f"tags.{key}", "too_long", f"tag values are at most {MAX_TAG_VALUE_LENGTH} characters")
    for key, value in tags.items():
        _remember(_VALID_TAG_KEYS, key)
        _remember(_VALID_TAG_VALUES, value)


def _guard_fields(event: dict[str, Any]) -> None:
    # The guard's verdict on a field name; the event's own keys are this module's constants, so this runs the
    # guard once per name (and, were a name refused, raises on every event carrying it).
    if not _GUARDED_FIELDS.issuperset(event):
        guard({key: 0 for key in event})
        _GUARDED_FIELDS.update(event)


# The keys of every event (build() and the caller's event_id and timestamp): the guard's verdict on them once.
_guard_fields(dict.fromkeys(("provider", "model", "input_tokens", "output_tokens", "latency_ms", "tags")))
_guard_fields(dict.fromkeys(("event_id", "timestamp")))


def cost(value: object) -> float | int:
    """A cost the server accepts: a finite JSON number within 0 … MAX_COST_USD with at most 12 decimal places
    (a float's shortest repr is what is sent, and what the server reads)."""
    if type(value) is int:
        if 0 <= value <= MAX_COST_USD:
            return value
    elif type(value) is float:
        if not 0 <= value <= MAX_COST_USD:  # NaN fails it too
            raise EventRefused("cost_usd", "out_of_range", f"value must be within 0 … {MAX_COST_USD:,}")
        text = repr(value)
        if "e" not in text and len(text) - text.index(".") <= COST_DECIMAL_PLACES + 1:
            return value
        exponent = Decimal(text).as_tuple().exponent  # 1e-07 and the like
        if isinstance(exponent, int) and exponent >= -COST_DECIMAL_PLACES:
            return value
        message = f"at most {COST_DECIMAL_PLACES} decimal places (round it: round(cost, {COST_DECIMAL_PLACES}))"
        raise EventRefused("cost_usd", "invalid_value", message)
    else:
        raise EventRefused("cost_usd", "invalid_value", "value must be a number (int or float)")
    raise EventRefused("cost_usd", "out_of_range", f"value must be within 0 … {MAX_COST_USD:,}")


def iso_timestamp(value: object) -> str:
    """A timezone-aware datetime as the ISO-8601 text the server reads."""
    if not isinstance(value, datetime):
        raise EventRefused("timestamp", "invalid_timestamp", "timestamp must be a datetime")
    if value.utcoffset() is None:
        raise EventRefused("timestamp", "invalid_timestamp", "timestamp must be timezone-aware (e.g. tzinfo=UTC)")
    return value.isoformat()


def event_id(value: object, field: str = "event_id") -> str:
    if type(value) is not str or _EVENT_ID.match(value) is None:
        raise EventRefused(field, "invalid_format", f"ids match {EVENT_ID_PATTERN}")
    return value


def _check_parts(event: dict[str, Any]) -> None:
    """The token parts within their totals, as the server checks them: cache reads and cache writes are disjoint
    parts of the input, the 1-hour writes a part of the writes (which must then be given), reasoning a part of
    the output."""
    total = event["input_tokens"]
    cached, writes = event.get("cached_input_tokens"), event.get("cache_creation_input_tokens")
    if cached is not None and cached > total:
        raise EventRefused("cached_input_tokens", "inconsistent_tokens", "part of input_tokens and cannot exceed it")
    if writes is not None and (cached or 0) + writes > total:
        message = "cached_input_tokens and cache_creation_input_tokens are disjoint parts of input_tokens"
        raise EventRefused("cache_creation_input_tokens", "inconsistent_tokens", message + " and cannot exceed it")
    hour = event.get("cache_creation_1h_input_tokens")
    if hour is not None and (writes is None or hour > writes):
        message = "part of cache_creation_input_tokens, which must be given, and cannot exceed it"
        raise EventRefused("cache_creation_1h_input_tokens", "inconsistent_tokens", message)
    reasoning = event.get("reasoning_tokens")
    if reasoning is not None and reasoning > event["output_tokens"]:
        raise EventRefused("reasoning_tokens", "inconsistent_tokens", "part of output_tokens and cannot exceed it")


def build(
    provider: object,
    model: object,
    input_tokens: object,
    output_tokens: object,
    latency_ms: object,
    tags: dict[str, str] | None,
) -> dict[str, Any]:
    """The event's required fields and tags after every rule: the tags first (the privacy guard, as the server
    runs it first), then the types and patterns. `add_optional` adds the optional fields; the caller adds
    `event_id` and `timestamp`."""
    if tags:
        check_tags(tags)
    if not (
        type(input_tokens) is int
        and type(output_tokens) is int
        and type(latency_ms) is int
        and 0 <= input_tokens <= MAX_TOKENS
        and 0 <= output_tokens <= MAX_TOKENS
        and 0 <= latency_ms <= MAX_LATENCY_MS
    ):
        _count("input_tokens", input_tokens, MAX_TOKENS)
        _count("output_tokens", output_tokens, MAX_TOKENS)
        _count("latency_ms", latency_ms, MAX_LATENCY_MS)
    event: dict[str, Any] = {
        "provider": provider
        if type(provider) is str and provider in _VALID_PROVIDERS
        else _name(_VALID_PROVIDERS, _PROVIDER, "provider", provider),
        "model": model
        if type(model) is str and model in _VALID_MODELS
        else _name(_VALID_MODELS, _MODEL, "model", model),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "latency_ms": latency_ms,
    }
    if tags:
        event["tags"] = tags
    return event


def add_optional(event: dict[str, Any], optional: Mapping[str, object]) -> None:
    """Add the optional fields that are not None to `event`, after their rules (the token parts within their
    totals, the service tier's pattern, the reservation id, the cost's range and places) and the guard's verdict
    on their names."""
    for field in OPTIONAL_TOKEN_FIELDS:
        value = optional.get(field)
        if value is not None:
            event[field] = _count(field, value, MAX_TOKENS)
    _check_parts(event)
    tier = optional.get("service_tier")
    if tier is not None:
        event["service_tier"] = _name(_VALID_SERVICE_TIERS, _SERVICE_TIER, "service_tier", tier)
    reservation = optional.get("reservation_id")
    if reservation is not None:
        event["reservation_id"] = event_id(reservation, "reservation_id")
    value = optional.get("cost_usd")
    if value is not None:
        event["cost_usd"] = cost(value)
    _guard_fields(event)


class IdMaker:
    """UUIDv7 ids as 32 hex digits (RFC 9562: 48 bits of Unix milliseconds, the version, 12 random bits, the
    variant, a 30-bit counter, 32 random bits), made without a system call per id. Unique within a process by the
    counter (it would have to wrap within one millisecond to repeat) and across processes by the 44 random bits,
    which a forked child draws anew (`reseed`)."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self._base = 0x7 << 76 | secrets.randbits(12) << 64 | 0b10 << 62 | secrets.randbits(32)
        self._counter = itertools.count(secrets.randbits(30))

    def __call__(self, now: float) -> str:
        """A new id; `now` is time.time(), which the caller reads anyway for the event's timestamp."""
        return "%032x" % (int(now * 1000) << 80 | self._base | (next(self._counter) & 0x3FFF_FFFF) << 32)  # noqa: UP031 (the fastest spelling)
