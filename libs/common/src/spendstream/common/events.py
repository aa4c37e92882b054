"""The usage event v1: its schema, its validation, and the batch that travels inside a Kafka envelope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import uuid_utils
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from spendstream.guard import Violation, check_event, path_segment

# The event's constraints, declared once: the model below and ingest's fast path (fastpath.py) both take them
# from here. Patterns match a whole value (anchor them: `\Z` in Python, whose `$` also matches before a final
# newline).
MAX_EVENTS_PER_BATCH = 500
EVENT_ID_MAX_LENGTH = 64
EVENT_ID_PATTERN = f"[A-Za-z0-9_-]{{1,{EVENT_ID_MAX_LENGTH}}}"
PROVIDER_PATTERN = r"[a-z0-9._-]{1,64}"
MODEL_PATTERN = r"[A-Za-z0-9._:/@-]{1,128}"
TAG_KEY_PATTERN = r"[a-z][a-z0-9_.-]{0,63}"
MAX_TAGS = 24
MAX_TAG_VALUE_LENGTH = 120
MAX_TOKENS = 1_000_000_000
MAX_LATENCY_MS = 3_600_000
MAX_COST_USD = 1_000_000
COST_DECIMAL_PLACES = 12
MAX_FUTURE_SKEW = timedelta(minutes=5)

EventId = Annotated[str, StringConstraints(pattern=f"^{EVENT_ID_PATTERN}$")]
Provider = Annotated[str, StringConstraints(pattern=f"^{PROVIDER_PATTERN}$")]
Model = Annotated[str, StringConstraints(pattern=f"^{MODEL_PATTERN}$")]
TagKey = Annotated[str, StringConstraints(pattern=f"^{TAG_KEY_PATTERN}$")]
TagValue = Annotated[str, StringConstraints(max_length=MAX_TAG_VALUE_LENGTH)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS, strict=True)]
Latency = Annotated[int, Field(ge=0, le=MAX_LATENCY_MS, strict=True)]
Cost = Annotated[Decimal, Field(ge=0, le=MAX_COST_USD, allow_inf_nan=False, decimal_places=COST_DECIMAL_PLACES)]

# The same bounds as msgspec checks them while ingest's fast path decodes a request into SealedEvent's fields
# (fastpath.py). A sealed event is read back without them: ingest checked them, the GCM tag vouches for it.
_TokenCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
BOUNDED_FIELDS: dict[str, Any] = {
    "input_tokens": _TokenCount,
    "output_tokens": _TokenCount,
    "cached_input_tokens": _TokenCount | None,
    "reasoning_tokens": _TokenCount | None,
    "latency_ms": Annotated[int, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)],
    "tags": Annotated[
        dict[str, Annotated[str, msgspec.Meta(max_length=MAX_TAG_VALUE_LENGTH)]], msgspec.Meta(max_length=MAX_TAGS)
    ],
}

# Tags that rollups group by; any other tag is stored on the raw event only.
WELL_KNOWN_TAGS = ("feature", "route", "task_type", "customer_plan", "customer_id", "environment")


class UsageEvent(BaseModel):
    """One AI call, described by metadata only. Validation here is the contract of the whole pipeline."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    event_id: EventId | None = None
    provider: Provider
    model: Model
    input_tokens: Tokens
    output_tokens: Tokens
    cached_input_tokens: Tokens | None = None
    reasoning_tokens: Tokens | None = None
    latency_ms: Latency
    cost_usd: Cost | None = None
    timestamp: AwareDatetime
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=MAX_TAGS)

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00, 9999-12-31T23:59-01:00: not a 500, an invalid timestamp
            raise PydanticCustomError("datetime_out_of_range", "timestamp is outside the calendar in UTC") from None

    @model_validator(mode="after")
    def _token_parts_within_totals(self) -> UsageEvent:
        if self.cached_input_tokens is not None and self.cached_input_tokens > self.input_tokens:
            raise ValueError("cached_input_tokens is part of input_tokens and cannot exceed it")
        if self.reasoning_tokens is not None and self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens is part of output_tokens and cannot exceed it")
        return self


# gc=False: the structs hold strings, numbers and the tags dict, never a reference back, so the cycle collector
# need not track them: rollup keeps 100,000 alive per batch, which it would otherwise walk again and again.
class SealedEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """A valid usage event as ingest seals it (`UsageEvent.model_dump_json`, field for field, each of its exact
    JSON type) and rollup and alerts read it back. ingest's fast path decodes requests into the same fields
    (fastpath.py derives its request form from this one)."""

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

    @classmethod
    def of(cls, event: UsageEvent) -> SealedEvent:
        """What sealing and reading back `event` gives."""
        return cls(
            event.event_id or "",
            event.provider,
            event.model,
            event.input_tokens,
            event.output_tokens,
            event.cached_input_tokens,
            event.reasoning_tokens,
            event.latency_ms,
            None if event.cost_usd is None else str(event.cost_usd),
            event.timestamp,
            dict(event.tags),
        )


class SealedBatch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A sealed plaintext: `{"events": [...]}` (ingest's fast path encodes it, rollup decodes it)."""

    events: list[SealedEvent]


class EventBatch(BaseModel):
    """The plaintext of one envelope: validated events of one workspace, each with its event_id set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: list[UsageEvent]


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """A batch of SealedEvents written as JSON (SealedBatch), the very bytes `EventBatch.model_dump_json()` gives
    for the same events, and how many there are: what ingest seals, from either of its paths."""

    json: bytes
    count: int


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
    accepted: list[UsageEvent]
    rejected: list[Rejection]


_CODES = {
    "extra_forbidden": ("unknown_field", "unknown field; the usage event v1 has no such field"),
    "missing": ("missing_field", "required field is missing"),
    "string_pattern_mismatch": ("invalid_format", "value does not match the allowed characters and length"),
    "string_too_long": ("too_long", "value is longer than allowed"),
    "too_long": ("too_many_items", "too many items"),
    "less_than_equal": ("out_of_range", "value is above the allowed maximum"),
    "greater_than_equal": ("out_of_range", "value is below the allowed minimum"),
    "timezone_aware": ("invalid_timestamp", "timestamp must carry a UTC offset"),
    "finite_number": ("invalid_value", "value must be a finite number"),
}


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            segment = item if item == "[key]" else path_segment(item)
            parts.append(f".{segment}" if parts else segment)
    return "".join(parts)


def _rejection_from_pydantic(index: int, error: Any) -> Rejection:
    """Map a pydantic error to our reason code. Pydantic messages can quote the input, so never use them raw."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "value_error" and not loc:
        return Rejection(index, "", "inconsistent_tokens", str(error["ctx"]["error"]))
    code, message = _CODES.get(kind, ("invalid_value", f"value has the wrong type or form ({kind})"))
    if kind == "too_long" and loc == ("tags",):
        code, message = "too_many_tags", f"at most {MAX_TAGS} tags are allowed"
    elif kind == "string_too_long" and loc[:1] == ("tags",):
        message = f"tag values are at most {MAX_TAG_VALUE_LENGTH} characters"
    elif kind.startswith("datetime") or kind.startswith("timezone"):
        code, message = "invalid_timestamp", "timestamp must be ISO-8601 with a UTC offset"
    elif kind == "string_pattern_mismatch" and loc[:1] == ("tags",) and len(loc) > 1 and loc[-1] == "[key]":
        code, message = "invalid_tag_key", f"tag keys match {TAG_KEY_PATTERN}"
    return Rejection(index, _field_path(loc).replace(".[key]", ""), code, message)


def validate_event(index: int, raw: Any, now: datetime, max_age: timedelta) -> UsageEvent | list[Rejection]:
    """Validate one decoded event: privacy guard first, then the schema, then the time window."""
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
    try:
        event = UsageEvent.model_validate(raw)
    except ValidationError as exc:
        return [_rejection_from_pydantic(index, e) for e in exc.errors(include_input=False, include_url=False)]
    if event.timestamp > now + MAX_FUTURE_SKEW:
        return [Rejection(index, "timestamp", "timestamp_in_future", "timestamp is more than 5 minutes in the future")]
    if event.timestamp < now - max_age:
        return [Rejection(index, "timestamp", "timestamp_too_old", "timestamp is older than the retention window")]
    if event.event_id is None:
        event = event.model_copy(update={"event_id": str(uuid_utils.uuid7())})
    return event


def validate_events(raw_events: list[Any], now: datetime, max_age: timedelta) -> ValidatedBatch:
    """Validate every event of a batch independently: one bad event never spoils the others."""
    accepted: list[UsageEvent] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(raw_events):
        result = validate_event(index, raw, now, max_age)
        if isinstance(result, UsageEvent):
            accepted.append(result)
        else:
            rejected.extend(result)
    return ValidatedBatch(accepted, rejected)
