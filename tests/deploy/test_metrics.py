"""What an SRE scrapes: ingest and rollup running (in-process, real Kafka, Redis and ClickHouse engine), one HTTP
batch with valid and refused events, then /metrics read back and compared, as increments, to what happened."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.settings import RollupSettings
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = [pytest.mark.integration]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_what_ingest_accepted_and_refused_and_what_rollup_stored(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    events = [
        usage_event(),
        usage_event(),
        usage_event(),
        {**usage_event(), "prompt": "never stored"},  # a content field
        usage_event(tags={"feature": "chat", "customer_id": "ann@example.com"}),
    ]  # PII in a tag
    services = [create_ingest(iso.settings(IngestSettings)), create_rollup(iso.settings(RollupSettings))]
    async with serving(services) as client:
        before = await scrape(client)
        answer = await client.post("/v1/events", json={"events": events}, headers=auth(ws["ingest"]))
        assert answer.status_code == 202, answer.text
        assert (await client.post("/v1/events", json={"events": events}, headers=auth("nope"))).status_code == 401
        assert (await client.post("/v1/events", json={"events": events}, headers=auth(ws["read"]))).status_code == 403
        assert answer.json()["accepted"] == 3
        refused = Counter(r["code"] for r in answer.json()["rejected"])
        assert sum(refused.values()) == 2 and len(refused) == 2, refused

        async def stored() -> Samples | None:
            now = await scrape(client)
            done = (
                value(now, "spendstream_rollup_events_stored_total")
                - value(before, "spendstream_rollup_events_stored_total")
                == 3
            )
            return now if done else None

        after = await eventually(stored, timeout=20)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("spendstream_ingest_events_accepted_total", source="http") == 3
    for code, count in refused.items():
        assert delta("spendstream_ingest_events_refused_total", code=code) == count
    assert delta("spendstream_ingest_requests_total", status="202") == 1
    assert delta("spendstream_ingest_requests_total", status="401") == 1
    assert delta("spendstream_ingest_requests_total", status="403") == 1
    # One HTTP batch is one Kafka record: one publish, acknowledged once, of 3 events.
    assert delta("spendstream_ingest_publish_seconds_count") == 1
    assert 0 < delta("spendstream_ingest_publish_seconds_sum") < 10
    assert delta("spendstream_ingest_batch_events_sum") == 3
    # rollup consumed that one record in one batch, wrote it with one insert, 0 records behind afterwards.
    assert delta("spendstream_rollup_batch_records_count") == 1
    assert delta("spendstream_rollup_batch_records_sum") == 1
    assert delta("spendstream_rollup_insert_seconds_count") == 1
    assert delta("spendstream_rollup_events_duplicate_total") == 0
    assert delta("spendstream_rollup_ingest_to_stored_seconds_count") == 1
    assert 0 <= delta("spendstream_rollup_ingest_to_stored_seconds_sum") < 20
    assert ("spendstream_rollup_consumer_lag_records", ()) in after
    assert value(after, "spendstream_rollup_consumer_lag_records") == 0
    assert value(after, "spendstream_rollup_last_stored_ingested_at_seconds") > 0
