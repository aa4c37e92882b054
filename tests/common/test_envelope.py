"""The batch envelope: events encrypted per workspace, bound to tenant and batch, readable only with the key;
a sealed plaintext reads back as exactly the events validation gave, and anything else is an unreadable record."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import lz4.frame  # type: ignore[import-untyped]
import msgspec
import orjson
import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import assume, given
from hypothesis import strategies as st

from spendstream.common import crypto
from spendstream.common.envelope import (
    BatchEnvelope,
    SealedEvent,
    UnreadableRecord,
    _aad,
    open_plaintext,
    read_record,
    seal,
    stored_events,
)
from spendstream.common.events import EncodedBatch, encode, sealed_events
from spendstream.common.tenants import KeyRing


def _events() -> list[SealedEvent]:
    return sealed_events(
        [
            {
                "event_id": "e1",
                "provider": "openai",
                "model": "gpt-4o",
                "input_tokens": 10,
                "output_tokens": 2,
                "latency_ms": 5,
                "timestamp": "2026-11-01T00:00:00Z",
                "tags": {"feature": "chat"},
            }
        ]
    )


def _open(envelope: BatchEnvelope, key: bytes) -> list[SealedEvent]:
    return stored_events(open_plaintext(envelope, key))[0]


def _seal(key: bytes, workspace_id: str = "ws_a") -> BatchEnvelope:
    return seal(
        EncodedBatch.of(_events()),
        workspace_id=workspace_id,
        batch_id="b1",
        key=key,
        key_version=1,
        ingested_at=datetime.now(UTC),
    )


def test_an_envelope_survives_json_and_opens_with_its_key() -> None:
    key = os.urandom(32)
    wire = _seal(key).model_dump_json()
    assert _open(BatchEnvelope.model_validate_json(wire), key) == _events()


def test_the_event_metadata_is_not_readable_on_the_wire() -> None:
    wire = _seal(os.urandom(32)).model_dump_json()
    assert "gpt-4o" not in wire and "chat" not in wire


def test_a_wrong_key_cannot_open_an_envelope() -> None:
    envelope = _seal(os.urandom(32))
    with pytest.raises(InvalidTag):
        open_plaintext(envelope, os.urandom(32))


def test_an_envelope_relabelled_to_another_workspace_does_not_open() -> None:
    key = os.urandom(32)
    forged = _seal(key).model_copy(update={"workspace_id": "ws_b"})
    with pytest.raises(InvalidTag):
        open_plaintext(forged, key)


def test_seal_compresses_the_plaintext_before_encrypting_it() -> None:
    key = os.urandom(32)
    events = [msgspec.structs.replace(_events()[0], event_id=f"e{i}") for i in range(500)]
    envelope = seal(
        EncodedBatch.of(events),
        workspace_id="ws_a",
        batch_id="b1",
        key=key,
        key_version=1,
        ingested_at=datetime.now(UTC),
    )
    plaintext = encode(events)
    assert envelope.encoding == "json+lz4"
    assert len(envelope.ciphertext) < len(plaintext) / 4  # repetitive metadata compresses; ciphertext cannot
    assert _open(envelope, key) == events


async def test_an_envelope_of_another_encoding_is_unparsable() -> None:
    # Only the LZ4-framed JSON is written, and so read; a bare-JSON envelope is no record of this topic.
    key = os.urandom(32)
    plaintext = encode(_events())
    bare = {
        **orjson.loads(_seal(key).model_dump_json()),
        "encoding": "json",
        "ciphertext": base64.b64encode(crypto.encrypt(key, plaintext, b"ws_a|b1|1")).decode(),
    }
    with pytest.raises(UnreadableRecord) as caught:
        await read_record(orjson.dumps(bare), cast(KeyRing, _Keys(key)))
    assert caught.value.reason == "unparsable_envelope"


def test_the_ciphertext_is_bound_to_the_encoding() -> None:
    # The AAD names the encoding: the same plaintext sealed under the AAD without it does not open.
    key = os.urandom(32)
    envelope = _seal(key)
    unbound = crypto.encrypt(key, lz4.frame.compress(encode(_events())), b"ws_a|b1|1")
    with pytest.raises(InvalidTag):
        open_plaintext(envelope.model_copy(update={"ciphertext": unbound}), key)
    assert _aad("ws_a", "b1", 1) == b"ws_a|b1|1|json+lz4"


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "e1",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1000,
        "output_tokens": 200,
        "latency_ms": 420,
        "timestamp": "2026-11-01T12:00:00Z",
        "tags": {"feature": "chat"},
    }
    event.update(overrides)
    return event


VARIED = [
    _event(),
    _event(
        event_id="e2",
        cost_usd=0.000123456789,
        cached_input_tokens=400,
        reasoning_tokens=50,
        timestamp="2026-11-01T01:30:00.123456+05:00",
        tags={},
    ),
    _event(
        event_id="e3",
        cost_usd=0,
        timestamp="2026-02-28T23:59:59.999-08:00",
        tags={"customer_id": "cust-1", "route": "/v1/x", "feature": "é ünïcode"},
    ),
    _event(event_id="e4", cost_usd=1_000_000, input_tokens=0, output_tokens=0, latency_ms=0),
    _event(
        event_id="e5",
        cached_input_tokens=300,
        cache_creation_input_tokens=500,
        cache_creation_1h_input_tokens=200,
        service_tier="priority",
        reservation_id="rsv_1",
    ),
]


def test_a_sealed_plaintext_reads_back_as_exactly_the_events_validation_gave() -> None:
    validated = sealed_events(VARIED)
    read = stored_events(encode(validated))[0]
    assert read == validated
    for event, original in zip(read, validated, strict=True):
        assert event.timestamp.tzinfo is UTC and event.timestamp == original.timestamp
        assert event.cost_usd == original.cost_usd
        assert type(event.input_tokens) is int and type(event.tags) is dict
        with pytest.raises(AttributeError):
            event.provider = "x"  # type: ignore[misc]  # frozen
    assert read[2].timestamp == datetime(2026, 3, 1, 7, 59, 59, 999000, tzinfo=UTC)
    assert read[1].cost_usd == "0.000123456789"


def test_a_sealed_event_has_exactly_the_fields_of_a_usage_event() -> None:
    assert SealedEvent.__struct_fields__ == (
        "event_id",
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "reasoning_tokens",
        "latency_ms",
        "cost_usd",
        "timestamp",
        "tags",
        "cache_creation_input_tokens",
        "cache_creation_1h_input_tokens",
        "service_tier",
        "reservation_id",
    )


def _full(**overrides: Any) -> dict[str, Any]:
    return {**_event(cached_input_tokens=None, reasoning_tokens=None, cost_usd=None), **overrides}


def test_stored_events_hands_on_the_array_of_events_exactly_as_seal_wrote_it() -> None:
    events = sealed_events(VARIED)
    plaintext = encode(events)
    sealed, events_json = stored_events(plaintext)
    assert sealed == events
    assert events_json == plaintext.removeprefix(b'{"events":').removesuffix(b"}")
    assert orjson.loads(events_json or b"") == orjson.loads(plaintext)["events"]


@pytest.mark.parametrize(
    "plaintext",
    [
        b'{"events": ' + orjson.dumps([_full()]) + b"}",  # spacing no encoder of ingest writes
        b' {"events":' + orjson.dumps([_full()]) + b"}",
    ],
    ids=["spaced", "leading-space"],
)
def test_stored_events_hands_on_no_array_that_is_not_seals_form(plaintext: bytes) -> None:
    sealed, events_json = stored_events(plaintext)
    assert events_json is None
    assert [e.event_id for e in sealed] == ["e1"]


@pytest.mark.parametrize(
    "plaintext",
    [
        b"",
        b"not json",
        b"[]",
        b'{"events": {}}',
        b'{"events": [], "more": 1}',
        orjson.dumps({"events": [_event()]}),  # without the keys of its null fields: seal writes every key
        orjson.dumps({"events": [1]}),
        orjson.dumps({"events": [_full(input_tokens="10")]}),
        orjson.dumps({"events": [_full(output_tokens=True)]}),
        orjson.dumps({"events": [_full(latency_ms=1.0)]}),
        orjson.dumps({"events": [_full(cached_input_tokens="1")]}),
        orjson.dumps({"events": [_full(cache_creation_input_tokens="1")]}),
        orjson.dumps({"events": [_full(cache_creation_1h_input_tokens=1.0)]}),
        orjson.dumps({"events": [_full(service_tier=1)]}),
        orjson.dumps({"events": [_full(reservation_id=["r"])]}),
        orjson.dumps({"events": [_full(event_id=None)]}),
        orjson.dumps({"events": [_full(model=7)]}),
        orjson.dumps({"events": [_full(timestamp="2026-11-01T12:00:00")]}),  # naive
        orjson.dumps({"events": [_full(timestamp="yesterday")]}),
        orjson.dumps({"events": [_full(timestamp=1700000000)]}),
        orjson.dumps({"events": [_full(timestamp="0001-01-01T00:00:00+05:00")]}),  # before year 1 in UTC
        orjson.dumps({"events": [_full(cost_usd="NaN")]}),
        orjson.dumps({"events": [_full(cost_usd="a lot")]}),
        orjson.dumps({"events": [_full(cost_usd=0.5)]}),
        orjson.dumps({"events": [_full(tags=["a"])]}),
        orjson.dumps({"events": [_full(tags={"feature": 1})]}),
        orjson.dumps({"events": [_full(cost_usd="")]}),
        # Costs are checked over the joined column first: a separator inside one must not split it into two.
        orjson.dumps({"events": [_full(cost_usd="1"), _full(cost_usd="1,2")]}),
        orjson.dumps({"events": [_full(cost_usd="1"), _full(cost_usd="")]}),
        orjson.dumps({"events": [_full(), _full(timestamp="9999-12-31T23:59:59-01:00")]}),  # after 9999 in UTC
        orjson.dumps({"events": [_full(input_tokens=-0.0)]}),
        orjson.dumps({"events": [_full(), _full(latency_ms=None)]}),  # one broken event among good ones
        # As many keys as seal writes, one of them another.
        orjson.dumps({"events": [{**{k: v for k, v in _full().items() if k != "tags"}, "prompt": "secret"}]}),
    ],
    ids=lambda p: str(len(p)),
)
def test_a_structurally_broken_plaintext_is_refused(plaintext: bytes) -> None:
    with pytest.raises(ValueError):
        stored_events(plaintext)


class _Keys:
    def __init__(self, key: bytes) -> None:
        self.key = key

    async def data_key(self, workspace_id: str, version: int) -> bytes | None:
        return self.key


async def test_a_broken_plaintext_is_an_unreadable_record_without_its_content() -> None:
    key = os.urandom(32)
    secret = "model-name-that-must-not-leak"
    plaintext = orjson.dumps({"events": [_full(model=secret, timestamp=f"{secret}Z")]})
    envelope = BatchEnvelope(
        workspace_id="ws_a",
        batch_id="b1",
        key_version=1,
        ingested_at=datetime.now(UTC),
        event_count=1,
        ciphertext=crypto.encrypt(key, lz4.frame.compress(plaintext), _aad("ws_a", "b1", 1)),
    )
    with pytest.raises(UnreadableRecord) as caught:
        await read_record(envelope.model_dump_json().encode(), cast(KeyRing, _Keys(key)))
    assert (caught.value.reason, caught.value.workspace_id) == ("invalid_events", "ws_a")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert secret not in str(caught.value) and secret not in repr(caught.value.args)


async def test_read_record_opens_what_seal_wrote() -> None:
    key = os.urandom(32)
    at = datetime.now(timezone(timedelta(hours=2)))
    envelope = seal(
        EncodedBatch.of(_events()), workspace_id="ws_a", batch_id="b1", key=key, key_version=1, ingested_at=at
    )
    opened = await read_record(envelope.model_dump_json().encode(), cast(KeyRing, _Keys(key)))
    assert opened.envelope == envelope and opened.events == _events()
    assert opened.events_json == encode(_events()).removeprefix(b'{"events":').removesuffix(b"}")


async def test_a_plaintext_that_is_no_lz4_frame_is_an_unreadable_record() -> None:
    key = os.urandom(32)
    not_a_frame = b'{"events": []}'
    envelope = BatchEnvelope(
        workspace_id="ws_a",
        batch_id="b1",
        key_version=1,
        ingested_at=datetime.now(UTC),
        event_count=0,
        ciphertext=crypto.encrypt(key, not_a_frame, _aad("ws_a", "b1", 1)),
    )
    with pytest.raises(UnreadableRecord) as caught:
        await read_record(envelope.model_dump_json().encode(), cast(KeyRing, _Keys(key)))
    assert caught.value.reason == "invalid_events"


_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
_VALID = st.fixed_dictionaries(
    {
        "event_id": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
        "provider": st.from_regex(r"[a-z0-9._-]{1,64}", fullmatch=True),
        "model": st.from_regex(r"[A-Za-z0-9._:/@-]{1,128}", fullmatch=True),
        "input_tokens": st.integers(0, 10**9),
        "output_tokens": st.integers(0, 10**9),
        "cached_input_tokens": st.none() | st.integers(0, 10**9),
        "reasoning_tokens": st.none() | st.integers(0, 10**9),
        "cache_creation_input_tokens": st.none() | st.integers(0, 10**9),
        "cache_creation_1h_input_tokens": st.none() | st.integers(0, 10**9),
        "service_tier": st.none() | st.sampled_from(["default", "flex", "priority", "scale", "batch"]),
        "reservation_id": st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
        "latency_ms": st.integers(0, 3_600_000),
        "cost_usd": st.none()
        | st.integers(0, 10**6)
        | st.floats(0, 10**6).filter(lambda f: f == round(f, 12) and "e" not in repr(f)),
        "timestamp": st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2199, 1, 1), timezones=_ZONES).map(
            datetime.isoformat
        ),
        "tags": st.dictionaries(
            st.from_regex(r"[a-z][a-z0-9_.-]{0,63}", fullmatch=True), st.text(max_size=120), max_size=24
        ),
    }
)


@given(st.lists(_VALID, min_size=1, max_size=5))
def test_any_valid_batch_reads_back_as_it_was_validated(raws: list[dict[str, Any]]) -> None:
    try:
        events = sealed_events(raws)
    except (
        ValueError
    ):  # token parts above their whole, a tag value the guard refuses: not a valid batch, nothing to seal
        assume(False)
        return
    plaintext = encode(events)
    sealed, events_json = stored_events(plaintext)
    assert sealed == events
    assert events_json is not None and orjson.loads(events_json) == orjson.loads(plaintext)["events"]
