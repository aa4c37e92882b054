"""How a Meter sends: batches, retries and back-off, Retry-After, drops and what each counts. Against a small
local server (tests/sdk/recorder.py) that answers 503, 429 or 401 when the test says so."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from spendstream_sdk import Meter, Tuning
from tests.sdk.recorder import Answer, recording
from tests.support import free_port

FAST: Tuning = {"flush_interval": 0.05, "backoff_base": 0.01, "backoff_max": 0.05}


def track(meter: Meter, n: int, **fields: Any) -> list[str]:
    values: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 100,
        "output_tokens": 20,
        "latency_ms": 300,
        **fields,
    }
    return [meter.track(**values) for _ in range(n)]


@pytest.mark.parametrize("status", [503, 429])
def test_a_retryable_answer_is_retried_with_the_same_ids_after_retry_after(status: int, meters: list[Any]) -> None:
    script = [Answer(status, {"Retry-After": "1"}), Answer(status, {"Retry-After": "1"})]
    with recording(script) as server:
        meter = Meter(url=server.url, api_key="k", **FAST)
        meters.append(meter)
        ids = track(meter, 3)
        assert meter.flush(timeout=20)
        requests = server.requests
    assert [r.status for r in requests] == [status, status, 202]
    assert all([e["event_id"] for e in r.events] == ids for r in requests)  # a retry is the same events
    gaps = [later.at - earlier.at for earlier, later in zip(requests, requests[1:], strict=False)]
    assert all(gap >= 1.0 for gap in gaps), gaps  # Retry-After: 1 was waited, not the 10 ms back-off
    stats = meter.stats
    assert (stats.sent, stats.retried, stats.dropped, stats.queued, stats.tracked) == (3, 2, 0, 0, 3)


def test_without_retry_after_the_back_off_applies(meters: list[Any]) -> None:
    with recording([Answer(503), Answer(502), Answer(504), Answer(500)]) as server:
        meter = Meter(url=server.url, api_key="k", **FAST)
        meters.append(meter)
        ids = track(meter, 2)
        assert meter.flush(timeout=20)
    assert server.stored_ids == ids
    assert meter.stats.retried == 4


def test_connection_errors_are_retried_until_the_server_is_there(meters: list[Any]) -> None:
    port = free_port()
    meter = Meter(url=f"http://127.0.0.1:{port}", api_key="k", **FAST)
    meters.append(meter)
    ids = track(meter, 5)
    deadline = time.monotonic() + 10
    while meter.stats.retried < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert meter.stats.retried >= 3  # refused connections, retried
    with recording(port=port) as server:
        assert meter.flush(timeout=20)
    assert server.stored_ids == ids
    assert (meter.stats.sent, meter.stats.dropped) == (5, 0)


def test_a_refused_batch_is_dropped_counted_and_logged_by_count_and_code_only(
    meters: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    refusal = Answer(401, body={"error": "unauthorized", "message": "unknown or revoked API key"})
    with recording([refusal]) as server, caplog.at_level(logging.WARNING, logger="spendstream_sdk"):
        meter = Meter(url=server.url, api_key="k", **FAST)
        meters.append(meter)
        track(meter, 2, tags={"customer_id": "cust-secret-7"})
        assert meter.flush(timeout=20)
    assert len(server.requests) == 1  # not retried: a 4xx other than 429 would be answered alike again
    stats = meter.stats
    assert (stats.dropped_refused, stats.sent, stats.retried, stats.queued) == (2, 0, 0, 0)
    assert "2 refused (unauthorized)" in caplog.text
    assert "cust-secret-7" not in caplog.text and "gpt-4o-mini" not in caplog.text


def test_events_the_server_rejects_one_by_one_are_counted_as_rejected(meters: list[Any]) -> None:
    one_rejected = {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [{"index": 1, "field": "timestamp", "code": "timestamp_too_old", "message": "too old"}],
    }
    all_rejected = {
        "accepted": 0,
        "duplicates": 0,
        "rejected": [{"index": i, "field": "model", "code": "invalid_format", "message": "m"} for i in range(2)],
    }
    with recording([Answer(202, body=one_rejected), Answer(422, body=all_rejected)]) as server:
        meter = Meter(url=server.url, api_key="k", **FAST)
        meters.append(meter)
        track(meter, 3)
        assert meter.flush(timeout=20)
        track(meter, 2)
        assert meter.flush(timeout=20)
    stats = meter.stats
    assert (stats.sent, stats.rejected, stats.dropped, stats.tracked) == (2, 3, 0, 5)


def test_events_older_than_max_age_are_dropped_and_counted(meters: list[Any]) -> None:
    with recording([Answer(503)] * 10_000) as server:
        meter = Meter(
            url=server.url, api_key="k", max_age=0.5, flush_interval=0.05, backoff_base=0.01, backoff_max=0.05
        )
        meters.append(meter)
        track(meter, 3)
        assert meter.flush(timeout=20)  # settled: by dropping them
        assert server.requests  # it did try
    stats = meter.stats
    assert (stats.dropped_expired, stats.sent, stats.queued, stats.tracked) == (3, 0, 0, 3)
    assert stats.retried >= 1


def test_a_full_queue_drops_new_events_and_counts_them(meters: list[Any]) -> None:
    with recording() as server:
        # The sender waits a minute for a batch to fill: the queue alone decides.
        meter = Meter(url=server.url, api_key="k", max_queue=10, flush_interval=60)
        meters.append(meter)
        ids = track(meter, 25)
        stats = meter.stats
        assert (stats.queued, stats.dropped_queue_full, stats.tracked) == (10, 15, 25)
        assert meter.close(timeout=10)
    assert server.stored_ids == ids[:10]
    assert meter.stats.sent == 10


def test_batches_hold_at_most_500_events_and_1_mib_of_json_gzipped(meters: list[Any]) -> None:
    # 24 tags of 120 characters: ~3.6 KB of JSON per event, so 500 of them would pass 1 MiB.
    big = {f"tag{i:02d}": "v" * 120 for i in range(24)}
    with recording() as server:
        meter = Meter(url=server.url, api_key="k", flush_interval=60)
        meters.append(meter)
        ids = track(meter, 1200, tags=big)
        assert meter.close(timeout=30)
    assert sorted(server.stored_ids) == sorted(ids)  # each once
    assert all(len(r.events) <= 500 and r.inflated_bytes <= 1024 * 1024 for r in server.requests)
    assert any(len(r.events) < 500 for r in server.requests[:-1])  # the size, not only the count, split them
    assert all(
        r.headers["Content-Encoding"] == "gzip" and r.headers["Authorization"] == "Bearer k" for r in server.requests
    )


def test_close_gives_up_at_its_timeout_and_counts_what_is_left(meters: list[Any]) -> None:
    with recording([Answer(503, {"Retry-After": "30"})] * 100) as server:
        meter = Meter(url=server.url, api_key="k", **FAST)
        meters.append(meter)
        track(meter, 4)
        while not server.requests:
            time.sleep(0.01)
        started = time.monotonic()
        assert not meter.close(timeout=1.0)
        waited = time.monotonic() - started
    assert waited < 5.0  # bounded by close's timeout, not by the 30 s the server asked for
    stats = meter.stats
    assert (stats.dropped_at_close, stats.sent, stats.queued) == (4, 0, 0)
    assert len(server.requests) == 1


def test_track_after_close_neither_raises_nor_sends(meters: list[Any]) -> None:
    with recording() as server:
        meter = Meter(url=server.url, api_key="k", **FAST)
        meters.append(meter)
        assert meter.close(timeout=5)
        track(meter, 2)
    assert server.requests == []
    assert (meter.stats.dropped_at_close, meter.stats.tracked) == (2, 2)


def test_several_sender_threads_send_every_event_once(meters: list[Any]) -> None:
    with recording([Answer(503)] * 3) as server:
        meter = Meter(url=server.url, api_key="k", senders=3, batch_size=50, flush_interval=0.05, backoff_base=0.01)
        meters.append(meter)
        ids = track(meter, 2000)
        assert meter.close(timeout=30)
    assert sorted(server.stored_ids) == sorted(ids)
    assert all(len(r.events) <= 50 for r in server.requests)
    assert (meter.stats.sent, meter.stats.retried) == (2000, 3)
