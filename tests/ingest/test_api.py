"""POST /v1/events against a running ingest (real Kafka and Redis): every refusal with its status and code."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from spendstream.common.service import build_http_app
from spendstream.common.topics import USAGE_EVENTS, topic_name
from spendstream.ingest.app import create_service
from spendstream.ingest.settings import IngestSettings
from tests.ingest.conftest import Running
from tests.ingest.topics import read_all
from tests.support import Isolation, auth, create_workspace, usage_event

pytestmark = pytest.mark.integration


async def _post(running: Running, body: Any, **headers: str) -> Any:
    return await running.client.post("/v1/events", json=body, headers={**auth(running.workspace["ingest"]), **headers})


REFUSED_EVENTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("messages", usage_event(messages=[{"role": "user"}]), "messages", "content_field"),
    ("systemPrompt", usage_event(systemPrompt="x"), "systemPrompt", "content_field"),
    ("tags.prompt_text", usage_event(tags={"prompt_text": "x"}), "tags.prompt_text", "content_field"),
    (
        "nested content",
        usage_event(extra={"deep": [{"completion_text": "x"}]}),
        "extra.deep[0].completion_text",
        "content_field",
    ),
    ("email in a tag", usage_event(tags={"user": "jane.doe@example.com"}), "tags.user", "pii_value"),
    ("phone in a tag", usage_event(tags={"caller": "+44 20 7946 0958"}), "tags.caller", "pii_value"),
    ("ip in a tag", usage_event(tags={"client": "203.0.113.7"}), "tags.client", "pii_value"),
    ("card in a tag", usage_event(tags={"ref": "4111 1111 1111 1111"}), "tags.ref", "pii_value"),
    ("25 tags", usage_event(tags={f"t{i}": "v" for i in range(25)}), "tags", "too_many_tags"),
    ("121-char value", usage_event(tags={"feature": "a" * 121}), "tags.feature", "too_long"),
    (
        "next week",
        usage_event(timestamp=(datetime.now(UTC) + timedelta(days=7)).isoformat()),
        "timestamp",
        "timestamp_in_future",
    ),
    ("forged workspace_id", usage_event(workspace_id="ws_someone_else"), "workspace_id", "forbidden_field"),
    ("unknown field", usage_event(colour="red"), "colour", "unknown_field"),
    ("bad tag key", usage_event(tags={"Bad Key": "x"}), "tags.?", "invalid_tag_key"),
    ("negative tokens", usage_event(input_tokens=-1), "input_tokens", "out_of_range"),
    ("cached above input", usage_event(input_tokens=5, cached_input_tokens=6), "", "inconsistent_tokens"),
    (
        "cache reads and writes above input",
        usage_event(input_tokens=5, cached_input_tokens=3, cache_creation_input_tokens=3),
        "",
        "inconsistent_tokens",
    ),
    ("hour-long writes without writes", usage_event(cache_creation_1h_input_tokens=1), "", "inconsistent_tokens"),
    ("bad service tier", usage_event(service_tier="Priority"), "service_tier", "invalid_format"),
    ("bad reservation id", usage_event(reservation_id="r 1"), "reservation_id", "invalid_format"),
    ("naive timestamp", usage_event(timestamp="2026-01-01T00:00:00"), "timestamp", "invalid_timestamp"),
]


@pytest.mark.parametrize(("case", "event", "field", "code"), REFUSED_EVENTS, ids=[c[0] for c in REFUSED_EVENTS])
async def test_refused_event_gets_422_with_index_field_and_reason_code(
    running: Running, case: str, event: dict[str, Any], field: str, code: str
) -> None:
    r = await _post(running, {"events": [event]})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["accepted"] == 0
    assert [(e["index"], e["field"], e["code"]) for e in body["rejected"]] == [(0, field, code)]
    assert body["rejected"][0]["message"]


async def test_valid_events_of_a_mixed_batch_are_accepted_and_the_bad_one_is_listed(running: Running) -> None:
    good = [usage_event(), usage_event()]
    r = await _post(running, {"events": [good[0], usage_event(prompt="x"), good[1]]})
    assert r.status_code == 202
    assert r.json()["accepted"] == 2
    assert [(e["index"], e["code"]) for e in r.json()["rejected"]] == [(1, "content_field")]


async def test_batch_of_501_events_is_413_and_nothing_is_published(running: Running) -> None:
    topic = topic_name(USAGE_EVENTS, running.iso.prefix)
    before = len(await read_all(running.iso.stack.kafka, topic))
    r = await _post(running, {"events": [usage_event() for _ in range(501)]})
    assert (r.status_code, r.json()["error"]) == (413, "too_many_events")
    assert len(await read_all(running.iso.stack.kafka, topic)) == before


async def test_6_mib_gzip_bomb_is_413_without_inflating_it(running: Running) -> None:
    bomb = gzip.compress(b'{"events": [' + b" " * (6 * 1024 * 1024) + b"]}")
    assert len(bomb) < 1024 * 1024
    r = await running.client.post(
        "/v1/events",
        content=bomb,
        headers={**auth(running.workspace["ingest"]), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert (r.status_code, r.json()["error"]) == (413, "payload_too_large")


async def test_gzip_body_within_the_cap_is_accepted(running: Running) -> None:
    body = gzip.compress(orjson.dumps({"events": [usage_event()]}))
    r = await running.client.post(
        "/v1/events",
        content=body,
        headers={**auth(running.workspace["ingest"]), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1


async def test_body_over_1_mib_is_413(running: Running) -> None:
    r = await running.client.post(
        "/v1/events",
        content=b"[" + b" " * (1024 * 1024 + 1) + b"]",
        headers={**auth(running.workspace["ingest"]), "Content-Type": "application/json"},
    )
    assert (r.status_code, r.json()["error"]) == (413, "payload_too_large")


async def test_wrong_media_type_is_415(running: Running) -> None:
    r = await running.client.post(
        "/v1/events", content=b"events", headers={**auth(running.workspace["ingest"]), "Content-Type": "text/plain"}
    )
    assert (r.status_code, r.json()["error"]) == (415, "unsupported_media_type")


@pytest.mark.parametrize("key", [None, "ssk_ingest_not-a-real-key"])
async def test_missing_or_unknown_key_is_401(running: Running, key: str | None) -> None:
    headers = auth(key) if key else {}
    r = await running.client.post("/v1/events", json={"events": [usage_event()]}, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"


async def test_read_key_cannot_send_events(running: Running) -> None:
    r = await running.client.post(
        "/v1/events", json={"events": [usage_event()]}, headers=auth(running.workspace["read"])
    )
    assert r.status_code == 403


async def test_batch_with_no_valid_event_is_422_and_nothing_is_published(running: Running) -> None:
    topic = topic_name(USAGE_EVENTS, running.iso.prefix)
    before = len(await read_all(running.iso.stack.kafka, topic))
    r = await _post(running, {"events": [usage_event(prompt="x"), usage_event(tags={"e": "a@b.io"})]})
    assert r.status_code == 422
    assert len(await read_all(running.iso.stack.kafka, topic)) == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"events": []}, "empty_batch"),
        ({"events": [], "workspace_id": "x"}, "unknown_field"),
        ([usage_event()], "invalid_batch"),
        ({"events": "x"}, "invalid_batch"),
    ],
)
async def test_malformed_batch_is_422_with_a_code(running: Running, body: Any, code: str) -> None:
    r = await _post(running, body)
    assert (r.status_code, r.json()["error"]) == (422, code)


async def test_repeated_event_id_is_a_duplicate_not_a_second_event(running: Running) -> None:
    event = usage_event()
    first = await _post(running, {"events": [event]})
    again = await _post(running, {"events": [event, event]})
    assert first.json()["accepted"] == 1
    assert again.status_code == 202
    assert again.json() == {"accepted": 0, "duplicates": 2, "rejected": []}


async def test_cache_writes_service_tier_and_reservation_are_accepted(running: Running) -> None:
    event = usage_event(
        provider="anthropic",
        input_tokens=1000,
        cached_input_tokens=300,
        cache_creation_input_tokens=500,
        cache_creation_1h_input_tokens=200,
        service_tier="batch",
        reservation_id="rsv_1",
    )
    r = await _post(running, {"events": [event]})
    assert r.status_code == 202
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": []}


async def test_accepted_batch_is_one_encrypted_record_keyed_by_workspace(running: Running) -> None:
    topic = topic_name(USAGE_EVENTS, running.iso.prefix)
    before = len(await read_all(running.iso.stack.kafka, topic))
    marker = "feature-marker-7f3a"
    r = await _post(running, {"events": [usage_event(tags={"feature": marker}) for _ in range(3)]})
    assert r.json()["accepted"] == 3
    records = (await read_all(running.iso.stack.kafka, topic))[before:]
    assert len(records) == 1
    assert records[0].key == running.workspace["workspace_id"].encode()
    assert marker.encode() not in records[0].value
    assert orjson.loads(records[0].value)["event_count"] == 3


def _throttled(limit: str) -> float:
    return REGISTRY.get_sample_value("spendstream_auth_throttled_total", {"limit": limit}) or 0.0


async def test_guessing_keys_is_braked_with_429_per_client_and_per_key_prefix_and_valid_keys_elsewhere_pass(
    iso: Isolation,
) -> None:
    workspace = await create_workspace(iso)
    service = create_service(iso.settings(IngestSettings, auth_failures_per_address=5, auth_failures_per_key_prefix=8))
    app = build_http_app([service])

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://spendstream.test")

    body = {"events": [usage_event()]}
    async with app.router.lifespan_context(app), client("203.0.113.9") as guesser, client("198.51.100.4") as other:
        by_address = _throttled("address")
        statuses = [
            (await guesser.post("/v1/events", json=body, headers=auth(f"ssk_ingest_guess{i:05d}x"))).status_code
            for i in range(7)
        ]
        # Five wrong keys are plain 401s; past them the client is told to wait.
        assert statuses == [401] * 5 + [429] * 2
        braked = await guesser.post("/v1/events", json=body, headers=auth(workspace["ingest"]))
        # While braked, nothing of that client is looked at, a right key included: a guess cannot be confirmed.
        assert braked.status_code == 429 and 1 <= int(braked.headers["Retry-After"]) <= 60
        assert braked.json()["error"] == "too_many_failed_authentications"
        assert _throttled("address") == by_address + 3
        # Another client's valid key is not slowed down at all.
        accepted = await other.post("/v1/events", json={"events": [usage_event()]}, headers=auth(workspace["ingest"]))
        assert accepted.status_code == 202, accepted.text

        # One prefix guessed from many addresses: wrong keys with it get 429, the valid key sharing it passes.
        prefix = workspace["ingest"][:16]
        by_prefix = _throttled("key_prefix")
        answers = []
        for i in range(10):
            async with client(f"192.0.2.{i + 1}") as spread:
                wrong = workspace["ingest"][:-4] + f"{i:04d}"
                assert wrong.startswith(prefix) and wrong != workspace["ingest"]
                answers.append((await spread.post("/v1/events", json=body, headers=auth(wrong))).status_code)
        assert answers == [401] * 8 + [429] * 2
        assert _throttled("key_prefix") == by_prefix + 2
        async with client("192.0.2.200") as owner:
            mine = await owner.post("/v1/events", json={"events": [usage_event()]}, headers=auth(workspace["ingest"]))
            assert mine.status_code == 202, mine.text
