"""The batch envelope: one validated batch of one workspace, as it travels on `usage.events.v1`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import lz4.frame  # type: ignore[import-untyped]
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


def seal(batch: EventBatch | EncodedBatch, *, workspace_id: str, batch_id: str, key: bytes, key_version: int,
         ingested_at: datetime, traceparent: str | None = None) -> BatchEnvelope:
    # An EncodedBatch is the same JSON already written (ingest's fast path), so the plaintext is the same bytes.
    encoded = EncodedBatch(batch.model_dump_json().encode(), len(batch.events)) \
        if isinstance(batch, EventBatch) else batch
    plaintext = lz4.frame.compress(encoded.json)
    sealed = crypto.encrypt(key, plaintext, _aad(workspace_id, batch_id, key_version, "json+lz4"))
    return BatchEnvelope(workspace_id=workspace_id, batch_id=batch_id, key_version=key_version,
                         ingested_at=ingested_at, event_count=encoded.count, ciphertext=sealed,
                         traceparent=traceparent, encoding="json+lz4")


class BrokenPlaintext(ValueError):
    """A decrypted plaintext that is not the JSON `seal` writes. Carries no content."""


_FIELDS = frozenset(UsageEvent.model_fields)
# The JSON types UsageEvent.model_dump_json writes for the fields read below (cost and timestamp are strings).
_KINDS = (str, str, str, int, int, int, dict, str)
_INT_OR_NULL = (int, type(None))
_new = object.__new__
_set = object.__setattr__


def _sealed_event(raw: Any) -> UsageEvent:
    """One event of a sealed plaintext, built without UsageEvent's validators.

    ingest validated it, and the GCM tag proves ingest sealed it, so the patterns, ranges, decimal places and
    the privacy guard are not run again. Its shape still is checked (the keys, JSON types, an aware timestamp,
    a finite cost), so a plaintext broken by a bug is refused here, not by ClickHouse on every redelivery.
    The instance is assembled as `model_construct` does, without its per-field loop (slower than validation).
    Any other set of keys (an older or newer UsageEvent) goes through the full validation instead.
    """
    if type(raw) is not dict:
        raise BrokenPlaintext
    if raw.keys() != _FIELDS:
        return UsageEvent.model_validate(raw)
    # type() is exact: a JSON true is a bool, never taken for an int.
    tags = raw["tags"]
    if ((type(raw["event_id"]), type(raw["provider"]), type(raw["model"]), type(raw["input_tokens"]),
         type(raw["output_tokens"]), type(raw["latency_ms"]), type(tags), type(raw["timestamp"])) != _KINDS
            or type(raw["cached_input_tokens"]) not in _INT_OR_NULL
            or type(raw["reasoning_tokens"]) not in _INT_OR_NULL):
        raise BrokenPlaintext
    for value in tags.values():
        if type(value) is not str:
            raise BrokenPlaintext
    try:
        timestamp = datetime.fromisoformat(raw["timestamp"])
        if timestamp.tzinfo is None:
            raise BrokenPlaintext
        raw["timestamp"] = timestamp.astimezone(UTC)  # OverflowError at the ends of the calendar
    except (ValueError, OverflowError):
        raise BrokenPlaintext from None
    cost = raw["cost_usd"]
    if cost is not None:
        if type(cost) is not str:
            raise BrokenPlaintext
        try:
            cost = raw["cost_usd"] = Decimal(cost)
        except InvalidOperation:
            raise BrokenPlaintext from None
        if not cost.is_finite():
            raise BrokenPlaintext
    event = _new(UsageEvent)
    _set(event, "__dict__", raw)
    _set(event, "__pydantic_fields_set__", set(_FIELDS))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def decode_sealed(plaintext: bytes) -> EventBatch:
    """The batch `seal` encrypted, trusted (see `_sealed_event`); raises ValueError on any other plaintext."""
    try:
        raw = orjson.loads(plaintext)
    except orjson.JSONDecodeError:
        raise BrokenPlaintext from None
    if type(raw) is not dict or raw.keys() != {"events"} or type(raw["events"]) is not list:
        raise BrokenPlaintext
    return EventBatch.model_construct(events=[_sealed_event(e) for e in raw["events"]])


def open_plaintext(envelope: BatchEnvelope, key: bytes) -> bytes:
    """The batch's JSON: decrypted, and decompressed when `seal` compressed it. Raises InvalidTag on a wrong key
    and BrokenPlaintext on a frame that does not decompress."""
    plain = crypto.decrypt(key, envelope.ciphertext, _aad(envelope.workspace_id, envelope.batch_id,
                                                          envelope.key_version, envelope.encoding))
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


async def read_record(value: bytes | None, keyring: KeyRing) -> tuple[BatchEnvelope, EventBatch]:
    """Parse and decrypt one record; raises UnreadableRecord (unparsable, no key, undecryptable, invalid)."""
    try:
        envelope = BatchEnvelope.model_validate_json(value or b"")
    except ValidationError:
        raise UnreadableRecord("unparsable_envelope") from None
    key = await keyring.data_key(envelope.workspace_id, envelope.key_version)
    if key is None:
        # The workspace's key was shredded (erasure) or never existed: unreadable by design.
        raise UnreadableRecord("no_data_key", envelope.workspace_id)
    try:
        return envelope, open_envelope(envelope, key)
    except InvalidTag:
        raise UnreadableRecord("undecryptable", envelope.workspace_id) from None
    except ValueError:  # messages of the decoder can quote the plaintext: only the reason code goes on
        raise UnreadableRecord("invalid_events", envelope.workspace_id) from None
