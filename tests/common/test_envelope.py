"""The batch envelope: events encrypted per workspace, bound to tenant and batch, readable only with the key."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from cryptography.exceptions import InvalidTag

from spendstream.common.envelope import BatchEnvelope, open_envelope, seal
from spendstream.common.events import EventBatch, UsageEvent


def _batch() -> EventBatch:
    event = UsageEvent(event_id="e1", provider="openai", model="gpt-4o", input_tokens=10, output_tokens=2,
                       latency_ms=5, timestamp=datetime(2026, 11, 1, tzinfo=UTC), tags={"feature": "chat"})
    return EventBatch(events=[event])


def _seal(key: bytes, workspace_id: str = "ws_a") -> BatchEnvelope:
    return seal(_batch(), workspace_id=workspace_id, batch_id="b1", key=key, key_version=1,
                ingested_at=datetime.now(UTC))


def test_an_envelope_survives_json_and_opens_with_its_key() -> None:
    key = os.urandom(32)
    wire = _seal(key).model_dump_json()
    opened = open_envelope(BatchEnvelope.model_validate_json(wire), key)
    assert opened == _batch()


def test_the_event_metadata_is_not_readable_on_the_wire() -> None:
    wire = _seal(os.urandom(32)).model_dump_json()
    assert "gpt-4o" not in wire and "chat" not in wire


def test_a_wrong_key_cannot_open_an_envelope() -> None:
    envelope = _seal(os.urandom(32))
    with pytest.raises(InvalidTag):
        open_envelope(envelope, os.urandom(32))


def test_an_envelope_relabelled_to_another_workspace_does_not_open() -> None:
    key = os.urandom(32)
    forged = _seal(key).model_copy(update={"workspace_id": "ws_b"})
    with pytest.raises(InvalidTag):
        open_envelope(forged, key)
