"""The usage event v1: one type, its constraints declared once, and the two passes that apply them.

`RequestEvent` is the event as a client sends it and `SealedEvent` as ingest seals it and rollup and alerts read
it back; the first is derived from the second. msgspec checks types, bounds and lengths while decoding; the rules
a type cannot state (patterns, the timestamp's shape, the cost's decimal places, the token parts, the time
window) are the functions below, written once over a column of values. ingest's fast path applies them to a whole
batch (fastpath.py); `validate_event` applies them to one event and explains each refusal.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import uuid_utils

from spendstream.guard import Violation, check_event, path_segment

# Patterns match a whole value (anchor them: `\Z` in Python, whose `$` also matches before a final newline).
MAX_EVENTS_PER_BATCH = 500
EVENT_ID_MAX_LENGTH = 64
EVENT_ID_PATTERN = f"[A-Za-z0-9_-]{{1,{EVENT_ID_MAX_LENGTH}}}"
PROVIDER_PATTERN = r"[a-z0-9._-]{1,64}"
SERVICE_TIER_PATTERN = r"[a-z0-9_-]{1,32}"
# The tiers spendstream's price table prices (prices.py); any other value matching the pattern is stored and
# priced at the standard rates.
SERVICE_TIERS = ("default", "flex", "priority", "scale", "batch")
MODEL_PATTERN = r"[A-Za-z0-9._:/@-]{1,128}"
TAG_KEY_PATTERN = r"[a-z][a-z0-9_.-]{0,63}"
MAX_TAGS = 24
MAX_TAG_VALUE_LENGTH = 120
MAX_TOKENS = 1_000_000_000
MAX_LATENCY_MS = 3_600_000
MAX_COST_USD = 1_000_000
COST_DECIMAL_PLACES = 12
MAX_FUTURE_SKEW = timedelta(minutes=5)
# Go's RFC3339Nano and Java's Instant.toString send up to 9; the digits past the microsecond are dropped.
MAX_FRACTION_DIGITS = 9

PROVIDER = re.compile(PROVIDER_PATTERN + r"\Z")
MODEL = re.compile(MODEL_PATTERN + r"\Z")
TAG_KEY = re.compile(TAG_KEY_PATTERN + r"\Z")
SERVICE_TIER = re.compile(SERVICE_TIER_PATTERN + r"\Z")

# Bounds msgspec checks while decoding a request. A sealed event is read back without them: ingest checked them,
# the GCM tag vouches for it.
_TokenCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
_TagValue = Annotated[str, msgspec.Meta(max_length=MAX_TAG_VALUE_LENGTH)]
BOUNDED_FIELDS: dict[str, Any] = {
    "input_tokens": _TokenCount,
    "output_tokens": _TokenCount,
    "cached_input_tokens": _TokenCount | None,
    "reasoning_tokens": _TokenCount | None,
    "cache_creation_input_tokens": _TokenCount | None,
    "cache_creation_1h_input_tokens": _TokenCount | None,
    "latency_ms": Annotated[int, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)],
    "tags": Annotated[
        dict[str, _TagValue],
        msgspec.Meta(max_length=MAX_TAGS, extra_json_schema={"propertyNames": {"pattern": f"^{TAG_KEY_PATTERN}$"}}),
    ],
}

# Tags that rollups group by; any other tag is stored on the raw event only.
WELL_KNOWN_TAGS = ("feature", "route", "task_type", "customer_plan", "customer_id", "environment")


# gc=False: the structs hold strings, numbers and the tags dict, never a reference back, so the cycle collector
# need not track them: rollup keeps 100,000 alive per batch, which it would otherwise walk again and again.
# omit_defaults: the optional fields after `tags` are sealed only when set, so an event without them seals the
# same bytes as before they existed, and a sealed event without them reads back with None.
class SealedEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False, omit_defaults=True):
    """A valid usage event as ingest seals it (each field of its exact JSON type, the timestamp in UTC) and rollup
    and alerts read it back. A request is decoded into `RequestEvent`, derived from this one.

    Token parts: `cached_input_tokens` (cache reads) and `cache_creation_input_tokens` (cache writes) are disjoint
    parts of `input_tokens`; `cache_creation_1h_input_tokens` is the part of the cache writes written for an hour;
    `reasoning_tokens` is a part of `output_tokens`. `service_tier` is the tier the provider billed (`default`,
    `flex`, `priority`, `scale`, `batch` for batch-API calls); `reservation_id` names the hard-budget reservation
    the call settles."""

    event_id: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int | None
    reasoning_tokens: int | None
    latency_ms: int
    cost_usd: str | None  # the decimal's text; checked by envelope.stored_events, parsed by ClickHouse
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)]
    tags: dict[str, str]
    cache_creation_input_tokens: int | None = None
    cache_creation_1h_input_tokens: int | None = None
    service_tier: str | None = None
    reservation_id: str | None = None


class SealedBatch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A sealed plaintext: `{"events": [...]}` (ingest encodes it, rollup decodes it)."""

    events: list[SealedEvent]


def _documented(kind: Any, **schema: Any) -> Any:
    """`kind` with JSON-schema facts msgspec does not check while decoding (the rules below check them)."""
    return Annotated[kind, msgspec.Meta(extra_json_schema=schema)]


# The request's form of SealedEvent: the same fields in the same order, bounded as BOUNDED_FIELDS declares
# (msgspec's int is strict: a JSON true, 1.0 or 1e3 is refused), the optional ones with their defaults, and
# three in the form a client sends them:
_AS_SENT: dict[str, tuple[Any, Any]] = {
    # UNSET when absent, None when null: the Kafka intake names the two differently (fastpath.check).
    "event_id": (_documented(str, pattern=f"^{EVENT_ID_PATTERN}$") | None | msgspec.UnsetType, msgspec.UNSET),
    # A JSON number only: an integer stays an int and a fraction a float, whose text is the sealed decimal's.
    "cost_usd": (
        _documented(int, minimum=0, maximum=MAX_COST_USD) | _documented(float, minimum=0, maximum=MAX_COST_USD) | None,
        None,
    ),
    "timestamp": (_documented(str, format="date-time"), msgspec.NODEFAULT),  # see stamps_to_utc
}
_DOCUMENTED: dict[str, Any] = {
    "provider": _documented(str, pattern=f"^{PROVIDER_PATTERN}$"),
    "model": _documented(str, pattern=f"^{MODEL_PATTERN}$"),
    "service_tier": _documented(str, pattern=f"^{SERVICE_TIER_PATTERN}$") | None,
    "reservation_id": _documented(str, pattern=f"^{EVENT_ID_PATTERN}$") | None,
}
_OPTIONAL: dict[str, Any] = {
    "cached_input_tokens": None,
    "reasoning_tokens": None,
    "tags": {},
    "cache_creation_input_tokens": None,
    "cache_creation_1h_input_tokens": None,
    "service_tier": None,
    "reservation_id": None,
}
# gc=False like SealedEvent: 500 more objects per request the cycle collector need not track.
RequestEvent: Any = msgspec.defstruct(
    "RequestEvent",
    [
        (f.name, *_AS_SENT[f.name])
        if f.name in _AS_SENT
        else (
            f.name,
            BOUNDED_FIELDS.get(f.name, _DOCUMENTED.get(f.name, f.type)),
            _OPTIONAL.get(f.name, msgspec.NODEFAULT),
        )
        for f in msgspec.structs.fields(SealedEvent)
    ],
    forbid_unknown_fields=True,
    kw_only=True,
    gc=False,
)
RequestBatch: Any = msgspec.defstruct(
    "RequestBatch",
    [("events", Annotated[list[RequestEvent], msgspec.Meta(min_length=1, max_length=MAX_EVENTS_PER_BATCH)])],
    forbid_unknown_fields=True,
)


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """A batch of SealedEvents written as JSON (SealedBatch) and how many there are: what ingest seals."""

    json: bytes
    count: int

    @classmethod
    def of(cls, events: list[SealedEvent]) -> EncodedBatch:
        return cls(encode(events), len(events))


_ENCODER = msgspec.json.Encoder()


def encode(events: list[SealedEvent]) -> bytes:
    """The sealed plaintext of `events`: `{"events":[...]}`, each field in SealedEvent's order."""
    return _ENCODER.encode(SealedBatch(events))


# The rules no type states, each over a column of values (a batch's, or one event's alone).


class InvalidCost(ValueError):
    """A cost outside the contract: `code` is the refusal's reason code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def joined(values: Sequence[str]) -> str:
    """The values joined by newlines; ValueError when one holds a newline of its own (it would pass for two)."""
    text = "\n".join(values)
    if text.count("\n") != len(values) - 1:
        raise ValueError("a newline inside a value")
    return text


def event_ids_valid(ids: Sequence[str]) -> bool:
    """Each matches EVENT_ID_PATTERN, [A-Za-z0-9_-]{1,EVENT_ID_MAX_LENGTH}, checked with str methods in C."""
    if max(map(len, ids)) > EVENT_ID_MAX_LENGTH or min(map(len, ids)) < 1:
        return False
    try:
        rest = joined(ids).replace("\n", "").replace("-", "").replace("_", "")
    except ValueError:
        return False
    return not rest or (rest.isascii() and rest.isalnum())  # ASCII letters and digits


# The timestamp shapes of the contract (digits written as `d`): a `T` or a space, up to MAX_FRACTION_DIGITS
# fraction digits, `Z` or a ±hh:mm offset. datetime.fromisoformat then refuses a leap second, 24:00 and an
# impossible date, and drops the digits past the microsecond; an offset's hours past 23 or minutes past 59 are
# checked apart (zone_valid).
_DIGITS = str.maketrans("0123456789", "dddddddddd")
STAMP_SHAPES = frozenset(
    f"dddd-dd-dd{sep}dd:dd:dd{fraction}{zone}"
    for sep in "T "
    for zone in ("Z", "+dd:dd", "-dd:dd")
    for fraction in ["", *("." + "d" * n for n in range(1, MAX_FRACTION_DIGITS + 1))]
)
_OFFSET = re.compile(r"[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]\Z")
ZONE = operator.itemgetter(slice(-6, None))  # the part of a stamp zone_valid reads
_TZINFO = operator.attrgetter("tzinfo")


def stamp_shapes_valid(stamps: Sequence[str]) -> bool:
    """Each has a shape of the contract."""
    try:
        return STAMP_SHAPES.issuperset(joined(stamps).translate(_DIGITS).split("\n"))
    except ValueError:
        return False


def zone_valid(suffix: str) -> bool:
    """`suffix`, the last six characters of a stamp of a valid shape, ends it in `Z` or a valid ±hh:mm."""
    return suffix[-1] == "Z" or _OFFSET.match(suffix) is not None


def stamps_to_utc(stamps: Sequence[str]) -> list[datetime]:
    """The instants of stamps of valid shapes and zones, in UTC; ValueError or OverflowError (at the ends of the
    calendar) for one that names none."""
    instants = list(map(datetime.fromisoformat, stamps))
    if set(map(_TZINFO, instants)) != {UTC}:
        instants = [t.astimezone(UTC) for t in instants]
    return instants


def window_refusal(instants: Sequence[datetime], now: datetime, max_age: timedelta) -> str | None:
    """The reason code when an instant is outside the accepted window at `now`, else None."""
    if max(instants) > now + MAX_FUTURE_SKEW:
        return "timestamp_in_future"
    if min(instants) < now - max_age:
        return "timestamp_too_old"
    return None


def parts_within(parts: Sequence[int | None], totals: Sequence[int]) -> bool:
    """Each part (reasoning_tokens of output_tokens) is absent or at most its total."""
    return parts.count(None) == len(parts) or not any(
        p is not None and p > t for p, t in zip(parts, totals, strict=True)
    )


def input_parts_within(cached: Sequence[int | None], writes: Sequence[int | None], inputs: Sequence[int]) -> bool:
    """The cache reads and the cache writes, disjoint parts of the input, are together at most input_tokens."""
    if writes.count(None) == len(writes):
        return parts_within(cached, inputs)
    return not any((c or 0) + (w or 0) > i for c, w, i in zip(cached, writes, inputs, strict=True))


def hour_writes_within(hour: Sequence[int | None], writes: Sequence[int | None]) -> bool:
    """Each hour-long part of the cache writes is absent, or present with the cache writes and at most them."""
    return hour.count(None) == len(hour) or not any(
        h is not None and (w is None or h > w) for h, w in zip(hour, writes, strict=True)
    )


def service_tiers_valid(tiers: Sequence[str | None]) -> bool:
    """Each is absent or matches SERVICE_TIER_PATTERN."""
    return all(t is None or SERVICE_TIER.match(t) is not None for t in tiers)


def reservation_ids_valid(ids: Sequence[str | None]) -> bool:
    """Each is absent or matches EVENT_ID_PATTERN."""
    named = [i for i in ids if i is not None]
    return not named or event_ids_valid(named)


_MAX_COST = Decimal(MAX_COST_USD)


def cost_text(value: int | float | None) -> str | None:
    """The sealed text of a cost as sent (a JSON integer as is; a fraction as its float's shortest repr, that is
    the decimal it names); InvalidCost when it is not finite, has more than COST_DECIMAL_PLACES places, or is
    outside 0 … MAX_COST_USD."""
    if value is None:
        return None
    if type(value) is float:
        text = repr(value)
        # In positional notation a float's repr is its decimal's text too (-0.0 included).
        if 0 <= value <= MAX_COST_USD and "e" not in text and len(text) - text.index(".") <= COST_DECIMAL_PLACES + 1:
            return text
    elif 0 <= value <= MAX_COST_USD:
        return str(value)
    cost = Decimal(repr(value))  # 1e-07 and the like
    exponent = cost.as_tuple().exponent
    # A shortest repr has no trailing zeros, so its exponent counts the places.
    if not isinstance(exponent, int) or exponent < -COST_DECIMAL_PLACES:  # not finite, or too many places
        raise InvalidCost("invalid_value")
    if not 0 <= cost <= _MAX_COST:
        raise InvalidCost("out_of_range")
    return str(cost)


# The explanation: one event at a time, every field decoded alone with its declared type, then the rules above
# over a column of one. It runs when the fast path refused a batch (or could not read it), so it is written for
# clarity, not speed.


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused event: its index in the request, the field path, a reason code, a content-free message."""

    index: int
    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class ValidatedBatch:
    accepted: list[SealedEvent]
    rejected: list[Rejection]


_REQUEST_FIELDS = {f.name: f for f in msgspec.structs.fields(RequestEvent)}
_ORDER = {name: position for position, name in enumerate(_REQUEST_FIELDS)}
_WRONG_TYPE = "value has the wrong type or form"
_BAD_FORMAT = "value does not match the allowed characters and length"
_BAD_STAMP = "timestamp must be ISO-8601 with a UTC offset"
_BAD_COST = {
    "invalid_value": f"value must be a finite JSON number with at most {COST_DECIMAL_PLACES} decimal places",
    "out_of_range": "value is outside 0 … 1,000,000",
}


def _bound_refusal(message: str) -> tuple[str, str]:
    """The reason code and message of msgspec's refusal of a value, from its message (which never quotes the
    value: `Expected `int` <= 10`, `Expected `str`, got `int``)."""
    if "got `" in message:
        return "invalid_value", _WRONG_TYPE
    if "length <=" in message:
        return "too_long", "value is longer than allowed"
    if "<=" in message:
        return "out_of_range", "value is above the allowed maximum"
    if ">=" in message:
        return "out_of_range", "value is below the allowed minimum"
    return "invalid_value", _WRONG_TYPE


def _default(info: msgspec.structs.FieldInfo) -> Any:
    if info.default_factory is not msgspec.NODEFAULT:
        return info.default_factory()
    return None if info.default is msgspec.UNSET else info.default


def _tag_refusals(index: int, tags: Any) -> list[Rejection]:
    """Why tags are not a JSON object of at most MAX_TAGS strings of at most MAX_TAG_VALUE_LENGTH characters."""
    if not isinstance(tags, dict):
        return [Rejection(index, "tags", "invalid_value", _WRONG_TYPE)]
    if len(tags) > MAX_TAGS:
        return [Rejection(index, "tags", "too_many_tags", f"at most {MAX_TAGS} tags are allowed")]
    refusals: list[Rejection] = []
    for key, value in tags.items():
        try:
            msgspec.convert(value, _TagValue)
        except msgspec.ValidationError as exc:
            code, message = _bound_refusal(str(exc))
            if code == "too_long":
                message = f"tag values are at most {MAX_TAG_VALUE_LENGTH} characters"
            refusals.append(Rejection(index, f"tags.{path_segment(key)}", code, message))
    return refusals


def _decoded(index: int, raw: dict[str, Any]) -> tuple[dict[str, Any], list[Rejection]]:
    """The event's fields of their declared types (RequestEvent's), and a refusal for each that is not."""
    try:
        return msgspec.structs.asdict(msgspec.convert(raw, RequestEvent)), []
    except msgspec.ValidationError:
        pass  # which fields: each decoded alone
    values: dict[str, Any] = {}
    refusals: list[Rejection] = []
    for name, info in _REQUEST_FIELDS.items():
        if name not in raw:
            if info.required:
                refusals.append(Rejection(index, name, "missing_field", "required field is missing"))
            else:
                values[name] = _default(info)
        elif name == "tags":
            found = _tag_refusals(index, raw[name])
            refusals.extend(found)
            if not found or found[0].field != "tags":  # a dict of at most MAX_TAGS: its keys are checked too
                values[name] = raw[name]
        else:
            try:
                values[name] = msgspec.convert(raw[name], info.type)
            except msgspec.ValidationError as exc:
                code, message = ("invalid_timestamp", _BAD_STAMP) if name == "timestamp" else _bound_refusal(str(exc))
                refusals.append(Rejection(index, name, code, message))
    for key in raw:
        if key not in _REQUEST_FIELDS:
            message = "unknown field; the usage event v1 has no such field"
            refusals.append(Rejection(index, path_segment(key), "unknown_field", message))
    return values, refusals


def _rule_refusals(index: int, values: dict[str, Any]) -> list[Rejection]:
    """The refusals of the rules no type states, over the decoded fields (a column of one each); the timestamp
    becomes its instant in UTC and the cost its sealed text."""
    refusals: list[Rejection] = []
    if "event_id" in values and values["event_id"] not in (None, msgspec.UNSET):
        if not event_ids_valid([values["event_id"]]):
            refusals.append(Rejection(index, "event_id", "invalid_format", _BAD_FORMAT))
    for name, pattern in (("provider", PROVIDER), ("model", MODEL)):
        if name in values and pattern.match(values[name]) is None:
            refusals.append(Rejection(index, name, "invalid_format", _BAD_FORMAT))
    if values.get("service_tier") is not None and not service_tiers_valid([values["service_tier"]]):
        refusals.append(Rejection(index, "service_tier", "invalid_format", _BAD_FORMAT))
    if values.get("reservation_id") is not None and not reservation_ids_valid([values["reservation_id"]]):
        refusals.append(Rejection(index, "reservation_id", "invalid_format", _BAD_FORMAT))
    if "cost_usd" in values:
        try:
            values["cost_usd"] = cost_text(values["cost_usd"])
        except InvalidCost as exc:
            refusals.append(Rejection(index, "cost_usd", exc.code, _BAD_COST[exc.code]))
    if "timestamp" in values:
        stamp = values["timestamp"]
        try:
            if not stamp_shapes_valid([stamp]) or not zone_valid(ZONE(stamp)):
                raise ValueError("not a shape of the contract")
            values["timestamp"] = stamps_to_utc([stamp])[0]
        except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00+01:00 is before the calendar
            refusals.append(Rejection(index, "timestamp", "invalid_timestamp", _BAD_STAMP))
    for key in values.get("tags", ()):
        if TAG_KEY.match(key) is None:
            message = f"tag keys match {TAG_KEY_PATTERN}"
            refusals.append(Rejection(index, f"tags.{path_segment(key)}", "invalid_tag_key", message))
    return refusals


def _in_field_order(refusal: Rejection) -> int:
    return _ORDER.get(refusal.field.partition(".")[0], len(_ORDER))


def validate_event(index: int, raw: Any, now: datetime, max_age: timedelta | None) -> SealedEvent | list[Rejection]:
    """One decoded event as it is sealed, or why it is refused: the privacy guard first, then every field's
    declared type and rule, then the token parts and the time window (none when `max_age` is None: tests and
    tools that seal events of any age). An event without an `event_id` (absent or null) is named with a
    UUIDv7."""
    if not isinstance(raw, dict):
        return [Rejection(index, "", "invalid_event", "each event must be a JSON object")]
    if "workspace_id" in raw:
        return [
            Rejection(
                index, "workspace_id", "forbidden_field", "the workspace comes from the API key, never from the payload"
            )
        ]
    violations: list[Violation] = check_event(raw)
    if violations:
        return [Rejection(index, v.field, v.code, v.message) for v in violations]
    values, refusals = _decoded(index, raw)
    refusals += _rule_refusals(index, values)
    if refusals:
        return sorted(refusals, key=_in_field_order)
    cached, writes, hour = (
        [values["cached_input_tokens"]],
        [values["cache_creation_input_tokens"]],
        [values["cache_creation_1h_input_tokens"]],
    )
    if not input_parts_within(cached, writes, [values["input_tokens"]]):
        message = (
            "cached_input_tokens is part of input_tokens and cannot exceed it"
            if writes[0] is None
            else "cached_input_tokens and cache_creation_input_tokens are disjoint parts of input_tokens "
            "and together cannot exceed it"
        )
        return [Rejection(index, "", "inconsistent_tokens", message)]
    if not hour_writes_within(hour, writes):
        message = (
            "cache_creation_1h_input_tokens is part of cache_creation_input_tokens, which must be given"
            if writes[0] is None
            else "cache_creation_1h_input_tokens is part of cache_creation_input_tokens and cannot exceed it"
        )
        return [Rejection(index, "", "inconsistent_tokens", message)]
    if not parts_within([values["reasoning_tokens"]], [values["output_tokens"]]):
        message = "reasoning_tokens is part of output_tokens and cannot exceed it"
        return [Rejection(index, "", "inconsistent_tokens", message)]
    late = None if max_age is None else window_refusal([values["timestamp"]], now, max_age)
    if late == "timestamp_in_future":
        return [Rejection(index, "timestamp", late, "timestamp is more than 5 minutes in the future")]
    if late == "timestamp_too_old":
        return [Rejection(index, "timestamp", late, "timestamp is older than the retention window")]
    if values["event_id"] in (None, msgspec.UNSET):
        values["event_id"] = str(uuid_utils.uuid7())
    return SealedEvent(**values)


def validate_events(raw_events: list[Any], now: datetime, max_age: timedelta | None) -> ValidatedBatch:
    """Validate every event of a batch independently: one bad event never spoils the others."""
    accepted: list[SealedEvent] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(raw_events):
        result = validate_event(index, raw, now, max_age)
        if isinstance(result, SealedEvent):
            accepted.append(result)
        else:
            rejected.extend(result)
    return ValidatedBatch(accepted, rejected)


def sealed_events(raw_events: list[Any]) -> list[SealedEvent]:
    """The events as ingest seals them, whatever their age (tests and tools); ValueError naming each refusal."""
    result = validate_events(raw_events, datetime.now(UTC), None)
    if result.rejected:
        raise ValueError("; ".join(f"{r.index} {r.field} {r.code}" for r in result.rejected))
    return result.accepted
