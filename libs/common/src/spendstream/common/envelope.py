"""The batch envelope: one validated batch of one workspace, as it travels on `usage.events.v1`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from cryptography.exceptions import InvalidTag
from pydantic import BaseModel, ConfigDict, ValidationError

from spendstream.common import crypto
from spendstream.common.events import EventBatch
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


def _aad(workspace_id: str, batch_id: str, key_version: int) -> bytes:
    # Binds the ciphertext to its tenant and batch: a record moved to another workspace fails to decrypt.
    return f"{workspace_id}|{batch_id}|{key_version}".encode()


def seal(batch: EventBatch, *, workspace_id: str, batch_id: str, key: bytes, key_version: int,
         ingested_at: datetime, traceparent: str | None = None) -> BatchEnvelope:
    sealed = crypto.encrypt(key, batch.model_dump_json().encode(), _aad(workspace_id, batch_id, key_version))
    return BatchEnvelope(workspace_id=workspace_id, batch_id=batch_id, key_version=key_version,
                         ingested_at=ingested_at, event_count=len(batch.events), ciphertext=sealed,
                         traceparent=traceparent)


def open_envelope(envelope: BatchEnvelope, key: bytes) -> EventBatch:
    """Decrypt and parse; raises InvalidTag on a wrong key and ValidationError on a corrupt plaintext."""
    plain = crypto.decrypt(key, envelope.ciphertext,
                           _aad(envelope.workspace_id, envelope.batch_id, envelope.key_version))
    return EventBatch.model_validate_json(plain)


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
    except ValidationError:
        raise UnreadableRecord("invalid_events", envelope.workspace_id) from None
