"""The batch envelope: one validated batch of one workspace, as it travels on `usage.events.v1`."""

from __future__ import annotations

import re
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from operator import attrgetter, is_not, methodcaller
from typing import Annotated, Literal

import lz4.frame  # type: ignore[import-untyped]
import msgspec
import orjson
from cryptography.exceptions import InvalidTag
from pydantic import BaseModel, ConfigDict, ValidationError

from spendstream.common import crypto
from spendstream.common.events import EncodedBatch, EventBatch, UsageEvent
from spendstream.common.tenants import KeyRing


class BatchEnvelope(BaseModel):
    """Routing metadata in clear (workspace, counts, times); the events themselves only encrypted."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    v: Literal[1] = 1
    workspace_id: str
    batch_id: str
    key_version: int
    ingested_at: datetime
    event_count: int
    ciphertext: bytes
    # W3C traceparent of the request that produced the batch, so a trace can be followed to ClickHouse.
    traceparent: str | None = None
    # The plaintext before encryption: the batch's JSON, LZ4-framed ("json+lz4", what `seal` writes) or bare
    # ("json", what it wrote first; still read). Ciphertext does not compress, so the plaintext is compressed
    # here and the record travels without Kafka compression (lz4 of the ciphertext was 21 % of ingest's CPU
    # for nothing). The batch is one workspace's own events and nothing secret of anyone else's is mixed in,
    # so the compressed size tells nobody more than the event count in clear does.
    encoding: Literal["json", "json+lz4"] = "json"


def _aad(workspace_id: str, batch_id: str, key_version: int, encoding: str = "json") -> bytes:
    # Binds the ciphertext to its tenant and batch: a record moved to another workspace fails to decrypt.
    # The encoding is bound too (a relabelled one fails the tag), in a form that leaves "json" records' AAD
    # as it always was.
    aad = f"{workspace_id}|{batch_id}|{key_version}"
    return (aad if encoding == "json" else f"{aad}|{encoding}").encode()


def seal(
    batch: EventBatch | EncodedBatch,
    *,
    workspace_id: str,
    batch_id: str,
    key: bytes,
    key_version: int,
    ingested_at: datetime,
    traceparent: str | None = None,
) -> BatchEnvelope:
    # An EncodedBatch is the same JSON already written (ingest's fast path), so the plaintext is the same bytes.
    encoded = (
        EncodedBatch(batch.model_dump_json().encode(), len(batch.events)) if isinstance(batch, EventBatch) else batch
    )
    plaintext = lz4.frame.compress(encoded.json)
    sealed = crypto.encrypt(key, plaintext, _aad(workspace_id, batch_id, key_version, "json+lz4"))
    return BatchEnvelope(
        workspace_id=workspace_id,
        batch_id=batch_id,
        key_version=key_version,
        ingested_at=ingested_at,
        event_count=encoded.count,
        ciphertext=sealed,
        traceparent=traceparent,
        encoding="json+lz4",
    )


class BrokenPlaintext(ValueError):
    """A decrypted plaintext that is not the JSON `seal` writes. Carries no content."""


class SealedEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """One event as `seal` writes it (UsageEvent.model_dump_json): every field, each of its exact JSON type.

    Not tracked by the cycle collector (gc=False; it holds no containers of its own but the tags dict): rollup
    keeps 100,000 of them alive per batch, which the collector would otherwise walk again and again."""

    event_id: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int | None
    reasoning_tokens: int | None
    latency_ms: int
    cost_usd: str | None  # the decimal as seal wrote it; checked by sealed_events, parsed by ClickHouse
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


_FIELDS = frozenset(UsageEvent.model_fields)
_DECODER = msgspec.json.Decoder(SealedBatch)
_ONE = msgspec.json.Decoder(SealedEvent)
_get_stamp, _get_cost, _get_tz = attrgetter("timestamp"), attrgetter("cost_usd"), attrgetter("tzinfo")
_HEAD = b'{"events":['  # how seal's plaintext begins (both of ingest's encoders write it without spaces)
_PLAIN_DECIMALS = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:,[0-9]+(?:\.[0-9]+)?)*")
_to_utc = methodcaller("astimezone", UTC)
_not_none = partial(is_not, None)
_new = object.__new__
_set = object.__setattr__


def sealed_events(plaintext: bytes) -> list[SealedEvent]:
    """The events of a plaintext `seal` wrote, trusted.

    ingest validated them, and the GCM tag proves ingest sealed them, so the patterns, ranges, decimal places
    and the privacy guard are not run again. Their shape still is checked (the keys, exact JSON types, an
    aware timestamp inside the calendar, a finite decimal cost), so a plaintext broken by a bug is refused
    here, not by ClickHouse on every redelivery: msgspec checks the types while it decodes, in C, and the
    rest runs column by column (`map`, no Python code per event): rollup reads 100,000 events per batch.
    A plaintext the strict decoder refuses is read again event by event (`_one_by_one`). Raises
    BrokenPlaintext (or pydantic's ValidationError) on anything `seal` never wrote.
    """
    return stored_events(plaintext)[0]


def stored_events(plaintext: bytes) -> tuple[list[SealedEvent], bytes | None]:
    """`sealed_events`, and the plaintext's JSON array of events when it is exactly what today's `seal` writes:
    `{"events":[...]}`, each event of today's key set, each checked as above. rollup hands that array to
    ClickHouse as it is (store.py), so it is given only when the strict decoder read every event of it (a key
    it does not know would be skipped by ClickHouse, not refused); None for any other form (an older key set,
    other spacing), whose events are then written from the structs."""
    strict = True
    try:
        events = _DECODER.decode(plaintext).events
    except msgspec.ValidationError:
        events, strict = _one_by_one(plaintext), False
    except msgspec.DecodeError:
        raise BrokenPlaintext from None
    stamps = list(map(_get_stamp, events))
    costs = list(filter(_not_none, map(_get_cost, events)))
    # seal writes UTC (both of ingest's paths); a UTC datetime is inside the calendar once decoded, so only
    # other offsets are converted, to find one that leaves it (OverflowError at the ends of the calendar).
    # Costs as seal writes them, plain digits with an optional fraction, are finite decimals: one regex over
    # the joined column; any other form (1E+3, NaN, a stray character) is read by Decimal one by one.
    joined = ",".join(costs)
    plain = joined.count(",") == len(costs) - 1 and _PLAIN_DECIMALS.fullmatch(joined) is not None
    try:
        if set(map(_get_tz, stamps)) != {UTC}:
            deque(map(_to_utc, stamps), maxlen=0)
        if costs and not plain and not all(map(Decimal.is_finite, map(Decimal, costs))):
            raise BrokenPlaintext
    except (OverflowError, InvalidOperation):
        raise BrokenPlaintext from None
    whole = strict and plaintext.startswith(_HEAD) and plaintext.endswith(b"]}")
    return events, plaintext[len(_HEAD) - 1 : -1] if whole else None


def _one_by_one(plaintext: bytes) -> list[SealedEvent]:
    """Events with other keys than `seal` writes today (an older or newer UsageEvent) are validated in full
    and read in today's form; an event with today's keys that the strict decoder refuses is broken."""
    try:
        raw = orjson.loads(plaintext)
    except orjson.JSONDecodeError:
        raise BrokenPlaintext from None
    if type(raw) is not dict or raw.keys() != {"events"} or type(raw["events"]) is not list:
        raise BrokenPlaintext
    events = []
    for event in raw["events"]:
        if type(event) is dict and event.keys() != _FIELDS:
            events.append(SealedEvent.of(UsageEvent.model_validate(event)))
            continue
        try:
            events.append(_ONE.decode(orjson.dumps(event)))
        except msgspec.ValidationError:
            raise BrokenPlaintext from None
    return events


def _usage_event(sealed: SealedEvent) -> UsageEvent:
    """The UsageEvent of one sealed event, assembled as `model_construct` does, without its per-field loop
    (slower than validation)."""
    values = {name: getattr(sealed, name) for name in SealedEvent.__struct_fields__}
    values["timestamp"] = sealed.timestamp.astimezone(UTC)
    if sealed.cost_usd is not None:
        values["cost_usd"] = Decimal(sealed.cost_usd)
    event = _new(UsageEvent)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", set(_FIELDS))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def decode_sealed(plaintext: bytes) -> EventBatch:
    """The batch `seal` encrypted, trusted (see `sealed_events`); raises ValueError on any other plaintext."""
    return EventBatch.model_construct(events=[_usage_event(e) for e in sealed_events(plaintext)])


def open_plaintext(envelope: BatchEnvelope, key: bytes) -> bytes:
    """The batch's JSON: decrypted, and decompressed when `seal` compressed it. Raises InvalidTag on a wrong key
    and BrokenPlaintext on a frame that does not decompress."""
    plain = crypto.decrypt(
        key,
        envelope.ciphertext,
        _aad(envelope.workspace_id, envelope.batch_id, envelope.key_version, envelope.encoding),
    )
    if envelope.encoding == "json+lz4":
        try:
            plain = lz4.frame.decompress(plain)
        except RuntimeError:  # lz4's error for a broken frame
            raise BrokenPlaintext from None
    return plain


def open_envelope(envelope: BatchEnvelope, key: bytes) -> EventBatch:
    """Decrypt and decode; raises InvalidTag on a wrong key and ValueError on a plaintext `seal` never wrote."""
    return decode_sealed(open_plaintext(envelope, key))


class UnreadableRecord(Exception):
    """A record on `usage.events.v1` that cannot be read; `reason` is a content-free code for dead letters."""

    def __init__(self, reason: str, workspace_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.workspace_id = workspace_id


async def read_sealed(value: bytes | None, keyring: KeyRing) -> tuple[BatchEnvelope, list[SealedEvent]]:
    """Parse and decrypt one record into its envelope and `sealed_events`;
    raises UnreadableRecord (unparsable, no key, undecryptable, invalid)."""
    envelope, events, _ = await read_stored(value, keyring)
    return envelope, events


async def read_stored(value: bytes | None, keyring: KeyRing) -> tuple[BatchEnvelope, list[SealedEvent], bytes | None]:
    """`read_sealed`, with the JSON array of the events as `stored_events` gives it (what rollup stores)."""
    try:
        envelope = BatchEnvelope.model_validate_json(value or b"")
    except ValidationError:
        raise UnreadableRecord("unparsable_envelope") from None
    key = await keyring.data_key(envelope.workspace_id, envelope.key_version)
    if key is None:
        # The workspace's key was shredded (erasure) or never existed: unreadable by design.
        raise UnreadableRecord("no_data_key", envelope.workspace_id)
    try:
        return envelope, *stored_events(open_plaintext(envelope, key))
    except InvalidTag:
        raise UnreadableRecord("undecryptable", envelope.workspace_id) from None
    except ValueError:  # messages of the decoder can quote the plaintext: only the reason code goes on
        raise UnreadableRecord("invalid_events", envelope.workspace_id) from None


async def read_record(value: bytes | None, keyring: KeyRing) -> tuple[BatchEnvelope, EventBatch]:
    """`read_sealed`, with the events as UsageEvents (what alerts counts)."""
    envelope, events = await read_sealed(value, keyring)
    return envelope, EventBatch.model_construct(events=[_usage_event(e) for e in events])
