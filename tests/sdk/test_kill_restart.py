"""ingest is SIGKILLed and restarted while a Meter is sending: every tracked event is stored exactly once."""

from __future__ import annotations

import threading
import time
from typing import Any

from spendstream_sdk import Meter
from tests.sdk.conftest import Spendstream, Workspace
from tests.support import ServiceProcess

EVENTS = 6000


def test_every_event_tracked_across_an_ingest_crash_is_stored_exactly_once(
    spendstream: Spendstream, workspace: Workspace, tmp_path: Any, meters: list[Any]
) -> None:
    # A second ingest of the same pipeline, for this test alone to kill.
    env = spendstream.iso.env(AUTH_FAILURES_PER_ADDRESS="100000", AUTH_FAILURES_PER_KEY_PREFIX="100000")
    ingest = ServiceProcess("ingest", env, tmp_path / "ingest.log")
    ingest.start()
    meter = Meter(url=ingest.url, api_key=workspace.ingest_key, flush_interval=0.05, backoff_base=0.05, backoff_max=0.5)
    meters.append(meter)

    def steady_calls() -> None:  # ~2,000 calls a second for 3 s, each with its own input_tokens
        for i in range(EVENTS):
            meter.track(provider="openai", model="gpt-4o-mini", input_tokens=i + 1, output_tokens=1, latency_ms=10)
            if i % 100 == 99:
                time.sleep(0.05)

    caller = threading.Thread(target=steady_calls)
    try:
        caller.start()
        time.sleep(1.0)
        ingest.kill()  # mid-stream: batches in flight get no answer, the next ones are refused connections
        ingest.start()  # the same port
        caller.join()
        assert meter.flush(timeout=120)
    finally:
        caller.join()
        ingest.terminate()
    stats = meter.stats
    assert stats.retried >= 1  # the crash was seen
    assert (stats.tracked, stats.sent, stats.dropped, stats.rejected) == (EVENTS, EVENTS, 0, 0)
    body = workspace.usage_when(lambda b: b["totals"]["requests"] >= EVENTS, timeout=60)
    assert body["totals"]["requests"] == EVENTS  # none twice
    assert body["totals"]["input_tokens"] == EVENTS * (EVENTS + 1) // 2  # none lost, none twice
