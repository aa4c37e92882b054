"""The batch envelope: one validated batch of one workspace, as it travels on `usage.events.v1`."""

from __future__ import annotations

import re
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from operator import attrgetter, is_not, methodcaller
from typing import Literal, NamedTuple

import lz4.frame  # type: ignore[import-untyped]
import msgspec
from cryptography.exceptions import InvalidTag
from pydantic import BaseModel, ConfigDict, ValidationError

from spendstream.common import crypto
from spendstream.common.events import EncodedBatch, SealedBatch
from spendstream.common.events import SealedEvent as SealedEvent  # what read_record gives, so named here too
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
    # The plaintext before encryption: the batch's JSON, LZ4-framed. Ciphertext does not compress, so the
    # plaintext is compressed here and the record travels without Kafka compression. The batch is one
    # workspace's own events and nothing secret of anyone else's is mixed in, so the compressed size tells
    # nobody more than the event count in clear does.
    encoding: Literal["json+lz4"] = "json+lz4"


def _aad(workspace_id: str, batch_id: str, key_version: int) -> bytes:
    # Binds the ciphertext to its tenant, batch and encoding: a record moved to another workspace fails to decrypt.
    return f"{workspace_id}|{batch_id}|{key_version}|json+lz4".encode()


def seal(
    batch: EncodedBatch,
    *,
    workspace_id: str,
    batch_id: str,
    key: bytes,
    key_version: int,
    ingested_at: datetime,
    traceparent: str | None = None,
) -> BatchEnvelope:
    plaintext = lz4.frame.compress(batch.json)
    return BatchEnvelope(
        workspace_id=workspace_id,
        batch_id=batch_id,
        key_version=key_version,
        ingested_at=ingested_at,
        event_count=batch.count,
        ciphertext=crypto.encrypt(key, plaintext, _aad(workspace_id, batch_id, key_version)),
        traceparent=traceparent,
    )


class BrokenPlaintext(ValueError):
    """A decrypted plaintext that is not the JSON `seal` writes. Carries no content."""


_DECODER = msgspec.json.Decoder(SealedBatch)
_get_stamp, _get_cost, _get_tz = attrgetter("timestamp"), attrgetter("cost_usd"), attrgetter("tzinfo")
_HEAD = b'{"events":['  # how seal's plaintext begins (events.encode writes it without spaces)
_PLAIN_DECIMALS = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:,[0-9]+(?:\.[0-9]+)?)*")
_to_utc = methodcaller("astimezone", UTC)
_not_none = partial(is_not, None)


def stored_events(plaintext: bytes) -> tuple[list[SealedEvent], bytes | None]:
    """The events of a plaintext `seal` wrote, trusted, and the plaintext's JSON array of them.

    ingest validated them, and the GCM tag proves ingest sealed them, so the patterns, ranges, decimal places
    and the privacy guard are not run again. Their shape still is checked (every key, exact JSON types, an
    aware timestamp inside the calendar, a finite decimal cost), so a plaintext broken by a bug is refused
    here, not by ClickHouse on every redelivery: msgspec checks the types while it decodes, in C, and the
    rest runs column by column (`map`, no Python code per event): rollup reads 100,000 events per batch.
    Raises BrokenPlaintext on anything `seal` never wrote.

    The array is `{"events":[...]}`'s inner `[...]`, which rollup hands to ClickHouse as it is (store.py); it
    is None when the plaintext is spaced otherwise than seal writes it (the events are then written from the
    structs)."""
    try:
        events = _DECODER.decode(plaintext).events
    except (msgspec.ValidationError, msgspec.DecodeError):
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
    whole = plaintext.startswith(_HEAD) and plaintext.endswith(b"]}")
    return events, plaintext[len(_HEAD) - 1 : -1] if whole else None


def open_plaintext(envelope: BatchEnvelope, key: bytes) -> bytes:
    """The batch's JSON: decrypted and decompressed. Raises InvalidTag on a wrong key and BrokenPlaintext on a
    frame that does not decompress."""
    plain = crypto.decrypt(
        key, envelope.ciphertext, _aad(envelope.workspace_id, envelope.batch_id, envelope.key_version)
    )
    try:
        decompressed: bytes = lz4.frame.decompress(plain)
    except RuntimeError:  # lz4's error for a broken frame
        raise BrokenPlaintext from None
    return decompressed


class UnreadableRecord(Exception):
    """A record on `usage.events.v1` that cannot be read; `reason` is a content-free code for dead letters."""

    def __init__(
        self,
        reason: str,
        workspace_id: str | None = None,
        batch_id: str | None = None,
        event_count: int = 0,
        ingested_at: datetime | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.workspace_id = workspace_id
        # From the envelope's clear metadata when it parsed: what the completeness ledger counts as dead-lettered.
        self.batch_id = batch_id
        self.event_count = event_count
        self.ingested_at = ingested_at


class OpenedRecord(NamedTuple):
    """A record of `usage.events.v1`, read: its envelope, its events, and their JSON array as sealed (see
    `stored_events`; rollup stores it as it is)."""

    envelope: BatchEnvelope
    events: list[SealedEvent]
    events_json: bytes | None


async def read_record(value: bytes | None, keyring: KeyRing) -> OpenedRecord:
    """Parse, decrypt and decode one record (rollup and alerts read it so); raises UnreadableRecord with a
    content-free reason: unparsable_envelope, no_data_key, undecryptable or invalid_events."""
    try:
        envelope = BatchEnvelope.model_validate_json(value or b"")
    except ValidationError:
        raise UnreadableRecord("unparsable_envelope") from None
    key = await keyring.data_key(envelope.workspace_id, envelope.key_version)
    if key is None:
        # The workspace's key was shredded (erasure) or never existed: unreadable by design.
        raise UnreadableRecord("no_data_key", envelope.workspace_id)
    try:
        return OpenedRecord(envelope, *stored_events(open_plaintext(envelope, key)))
    except InvalidTag:
        raise UnreadableRecord("undecryptable", *_coordinates(envelope)) from None
    except ValueError:  # messages of the decoder can quote the plaintext: only the reason code goes on
        raise UnreadableRecord("invalid_events", *_coordinates(envelope)) from None


def _coordinates(envelope: BatchEnvelope) -> tuple[str, str, int, datetime]:
    return envelope.workspace_id, envelope.batch_id, envelope.event_count, envelope.ingested_at
