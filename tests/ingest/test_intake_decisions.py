"""The raw intake's decisions over in-memory fakes (tests/ingest/fakes.py): poison records are rejected with a
content-free RejectionRecord and the consumer moves on, repeats within a batch and redelivered records count
once, and a malformed batch gets the same code at the Kafka door as at the HTTP one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from spendstream.common.members import MemberDirectory
from spendstream.common.records import MemberRecord, RejectionRecord
from spendstream.common.tenants import Principal
from spendstream.ingest.api import build_router
from spendstream.ingest.batches import PublishFailed
from spendstream.ingest.settings import IngestSettings
from tests.ingest.fakes import Door, Record, door, principal
from tests.support import usage_event

KEY = [("x-api-key", b"key-a")]


def _rejections(d: Door) -> list[tuple[int, int | None, str, str, str | None]]:
    parsed = [RejectionRecord.model_validate_json(r.value) for r in d.broker.on("ingest.rejected.v1")]
    return [(p.source_offset, p.index, p.field, p.code, p.workspace_id) for p in parsed]


async def _post(d: Door, body: bytes) -> httpx.Response:
    """The HTTP door over the same fakes: POST /v1/events with an ingest key of `ws_a`."""
    app = FastAPI()

    async def caller() -> Any:
        return principal("ws_a")

    app.include_router(build_router(IngestSettings(), d.acceptor, d.workspaces, caller))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        return await client.post("/v1/events", content=body, headers={"content-type": "application/json"})


def _forwarded(d: Door) -> list[int]:
    return [orjson.loads(r.value)["event_count"] for r in d.broker.on("usage.events.v1")]


async def test_poison_records_are_rejected_with_a_reason_and_the_consumer_moves_on() -> None:
    d = door(max_record_bytes=200_000)
    secret = "raw-secret-Xi"
    ok = orjson.dumps({"events": [usage_event()]})
    records = [
        Record(b"\xff\xfe not json " + secret.encode(), KEY, 0),
        Record(ok, [("x-api-key", b"ssk_ingest_forged")], 1),
        Record(ok, [], 2),
        Record(ok, [("x-api-key", b"\xff\xfe\xfd")], 3),
        Record(b'{"events": [' + b" " * 200_001 + b"]}", KEY, 4),
        Record(ok, [("x-api-key", b"read-a")], 5),
        Record(orjson.dumps({"events": [usage_event() for _ in range(501)]}), KEY, 6),
        Record(None, KEY, 7),
        Record(b"", KEY, 8),
        Record(ok, [("x-api-key", b"key-c")], 9),
        Record(orjson.dumps({"events": [usage_event(prompt=secret), usage_event()]}), KEY, 10),
        Record(ok, [("X-API-Key", b"key-a")], 11),
    ]
    await d.intake.handle_batch(records)  # returns: every record is forwarded or rejected for good
    assert sorted(_rejections(d)) == [
        (0, None, "", "invalid_json", "ws_a"),
        (1, None, "", "unauthorized", None),
        (2, None, "", "unauthorized", None),
        (3, None, "", "unauthorized", None),
        (4, None, "", "payload_too_large", None),
        (5, None, "", "unauthorized", None),
        (6, None, "", "too_many_events", "ws_a"),
        (7, None, "", "empty_record", None),
        (8, None, "", "empty_record", None),
        (9, None, "", "workspace_cancelled", "ws_c"),
        (10, 0, "prompt", "content_field", "ws_a"),
    ]
    assert sorted(_forwarded(d)) == [1, 1]
    for published in d.broker.records:
        assert secret.encode() not in published.value
    # Rejections are keyed by the record's coordinates, so a redelivered one is recognisable.
    assert {r.key for r in d.broker.on("ingest.rejected.v1")} >= {b"ingest.raw.v1/0/0", b"ingest.raw.v1/0/10"}


async def test_repeats_within_a_record_are_forwarded_once() -> None:
    d = door()
    twice = usage_event(event_id="same")
    await d.intake.handle(Record(orjson.dumps({"events": [twice, twice, usage_event(event_id="other")]}), KEY, 0))
    assert _forwarded(d) == [2]
    assert d.dedupe.marked == {"ws_a": {"same", "other"}}


async def test_a_redelivered_record_is_counted_once() -> None:
    # Events without an event_id are named by the record's coordinates, so the redelivery carries the same ids.
    d = door()
    unnamed = {k: v for k, v in usage_event().items() if k != "event_id"}
    record = Record(orjson.dumps({"events": [unnamed] * 3}), KEY, 7, partition=2)
    await d.intake.handle(record)
    await d.intake.handle(record)
    assert _forwarded(d) == [3]
    assert d.dedupe.marked["ws_a"] == {"raw-2-7-0", "raw-2-7-1", "raw-2-7-2"}


@pytest.mark.parametrize("fast", [True, False], ids=["all valid", "with a refused event"])
async def test_a_forward_kafka_does_not_acknowledge_comes_again_and_then_counts_once(fast: bool) -> None:
    d = door()
    events: list[dict[str, Any]] = [{k: v for k, v in usage_event().items() if k != "event_id"} for _ in range(2)]
    if not fast:
        events.append(usage_event(prompt="x"))
    record = Record(orjson.dumps({"events": events}), KEY, 3)
    d.broker.failure = TimeoutError()
    with pytest.raises(PublishFailed):
        await d.intake.handle_batch([record])
    assert d.broker.records == [] and d.dedupe.marked == {} and d.limiter.used == {"ws_a": 0}
    d.broker.failure = None
    await d.intake.handle_batch([record])
    await d.intake.handle_batch([record])  # once more, as after a crash before the commit
    assert _forwarded(d) == [2]
    assert d.limiter.used == {"ws_a": 2}
    expected = [] if fast else [(3, 2, "prompt", "content_field", "ws_a")] * 2  # at least once, by coordinates
    assert _rejections(d) == expected


MALFORMED: list[tuple[str, bytes]] = [
    ("not json", b"{"),
    ("a list", orjson.dumps([usage_event()])),
    ("events not a list", b'{"events": "x"}'),
    ("no events", b'{"batch": []}'),
    ("empty", b'{"events": []}'),
    ("extra key", orjson.dumps({"events": [usage_event()], "workspace_id": "ws_x"})),
    ("extra key, empty", b'{"events": [], "workspace_id": "x"}'),
    ("too many", orjson.dumps({"events": [usage_event() for _ in range(501)]})),
]
EXPECTED = {
    "not json": "invalid_json",
    "a list": "invalid_batch",
    "events not a list": "invalid_batch",
    "no events": "invalid_batch",
    "empty": "empty_batch",
    "extra key": "unknown_field",
    "extra key, empty": "unknown_field",
    "too many": "too_many_events",
}


@pytest.mark.parametrize(("case", "body"), MALFORMED, ids=[c for c, _ in MALFORMED])
async def test_both_doors_answer_a_malformed_batch_with_the_same_code(case: str, body: bytes) -> None:
    d = door(max_record_bytes=10_000_000)
    await d.intake.handle(Record(body, KEY, 0))
    (rejection,) = _rejections(d)
    answer = await _post(d, body)
    assert answer.status_code in (400, 413, 422)
    assert answer.json()["error"] == rejection[3] == EXPECTED[case]
    assert _forwarded(d) == []


# issue 20, item 1: a key that holds data (an email, a card number) was echoed verbatim in the refusal.
DATA_KEYS: list[tuple[dict[str, Any], str, str]] = [
    ({"tags": {"jane.roe@example.com": "x"}}, "tags.?", "invalid_tag_key"),
    ({"tags": {"4111111111111111": "x"}}, "tags.?", "invalid_tag_key"),
    ({"tags": {"jane.roe.prompt@example.com": "x"}}, "tags.?", "content_field"),
    ({"jane.roe@example.com": 1}, "?", "unknown_field"),
    ({"a4111111111111111": 1}, "?", "unknown_field"),
    ({"colour": {"jane.roe@example.com": {"prompt": 1}}}, "colour.?.prompt", "content_field"),
]


@pytest.mark.parametrize(("overrides", "field", "code"), DATA_KEYS, ids=[str(i) for i in range(len(DATA_KEYS))])
async def test_a_key_holding_data_is_never_echoed_by_either_door(
    overrides: dict[str, Any], field: str, code: str
) -> None:
    d = door()
    body = orjson.dumps({"events": [usage_event(**overrides)]})
    await d.intake.handle(Record(body, KEY, 0))
    answer = await _post(d, body)
    assert answer.status_code == 422
    assert [(r["index"], r["field"], r["code"]) for r in answer.json()["rejected"]] == [(0, field, code)]
    assert _rejections(d) == [(0, 0, field, code, "ws_a")]
    for secret in (b"jane.roe", b"4111111111111111"):
        assert secret not in answer.content
        assert all(secret not in r.value for r in d.broker.records)


async def test_a_key_issued_by_a_member_ends_with_the_membership_on_the_raw_intake_too() -> None:
    d = door()
    d.keys._principals["members-key"] = Principal(workspace_id="ws_a", scope="ingest", key_id="k-m", issued_by="mem_1")
    members = Members()
    d.intake._members = members  # the service passes its MemberDirectory (app.py)
    members.active_ids = {"mem_1"}
    await d.intake.handle(Record(orjson.dumps({"events": [usage_event()]}), [("x-api-key", b"members-key")], 0))
    assert _forwarded(d) == [1]
    members.active_ids = set()  # removed from the workspace
    await d.intake.handle(Record(orjson.dumps({"events": [usage_event()]}), [("x-api-key", b"members-key")], 1))
    assert _forwarded(d) == [1]
    assert _rejections(d) == [(1, None, "", "unauthorized", None)]


class Members(MemberDirectory):
    """The replayed members, reduced to which member ids are active in `ws_a`."""

    def __init__(self) -> None:
        self.active_ids: set[str] = set()

    async def active(self, member_id: str, workspace_id: str) -> MemberRecord | None:
        if member_id not in self.active_ids or workspace_id != "ws_a":
            return None
        now = datetime.now(UTC)
        return MemberRecord(member_id=member_id, workspace_id="ws_a", role="member", created_at=now, updated_at=now)
