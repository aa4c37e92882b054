"""The completeness ledger over real ingest and rollup: exact after duplicates, a batch ingest took twice and a
replay of every record; an event deleted on purpose from the raw table shows as a gap and raises one alert."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from spendstream.common.envelope import BatchEnvelope
from spendstream.common.records import DataAlert, IngestTally
from spendstream.common.topics import INGEST_TALLIES, ROLLUP_ALERTS, topic_name
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.settings import RollupSettings
from tests.ingest.topics import read_all
from tests.rollup.kafka import lag, publisher
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration


def _noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def _rollup(iso: Isolation, **overrides: Any) -> Any:
    return create_rollup(iso.settings(RollupSettings, batch_timeout_ms=50, **overrides))


async def _post(client: httpx.AsyncClient, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    r = await client.post("/v1/events", json={"events": events}, headers=auth(key))
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


async def _ledger(client: httpx.AsyncClient, key: str, today: date) -> dict[date, dict[str, Any]]:
    """The ledger of `today` and the day before: `today` is the day the test stamped its events with, taken once,
    so that a run crossing midnight UTC reads the days its events are on."""
    params = {"from": (today - timedelta(days=1)).isoformat(), "to": today.isoformat()}
    r = await client.get("/v1/completeness", params=params, headers=auth(key))
    assert r.status_code == 200, r.text
    return {date.fromisoformat(d["day"]): d for d in r.json()["days"]}


def _exact(day: dict[str, Any], events: int) -> bool:
    counts = (day["accepted"], day["on_topic"], day["stored_raw"], day["in_rollup"])
    return counts == (events,) * 4 and day["dead_lettered"] == day["erased"] == 0


async def _when_exact(
    client: httpx.AsyncClient, key: str, today: date, expected: dict[date, int]
) -> dict[date, dict[str, Any]]:
    async def check() -> dict[date, dict[str, Any]] | None:
        days = await _ledger(client, key, today)
        matches = days.keys() == expected.keys() and all(_exact(days[d], n) for d, n in expected.items())
        return days if matches else None

    return await eventually(check, timeout=60, interval=0.3)


async def _forget_seen_ids(iso: Isolation) -> None:
    """As if Redis lost ingest's memory of the ids it took (or the mark after a publish never happened)."""
    client = aioredis.from_url(iso.stack.redis)
    try:
        keys = [k async for k in client.scan_iter(match=f"{iso.prefix}*seen*")]
        assert keys, "ingest remembers the ids it took in Redis"
        await client.delete(*keys)
    finally:
        await client.aclose()


async def _data_alerts(iso: Isolation) -> list[DataAlert]:
    """Every data alert on the topic up to its current end (an empty poll is no proof the topic is read)."""
    records = await read_all(iso.stack.kafka, topic_name(ROLLUP_ALERTS, iso.prefix))
    return [ROLLUP_ALERTS.record.decode(r.value) for r in records if r.value]


async def test_the_ledger_is_exact_after_duplicates_a_batch_ingest_took_twice_and_a_replay(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    now = datetime.now(UTC)
    today = [usage_event(timestamp=now.isoformat()) for _ in range(30)]
    yesterday = [usage_event(timestamp=(now - timedelta(days=1)).isoformat()) for _ in range(5)]
    async with serving([create_ingest(iso.settings(IngestSettings)), _rollup(iso)]) as client:
        assert (await _post(client, ws["ingest"], today[:20] + yesterday))["accepted"] == 25
        again = await _post(client, ws["ingest"], today[10:])
        assert (again["accepted"], again["duplicates"]) == (10, 10)
        await _forget_seen_ids(iso)
        # The same events in a second envelope with its own tally: accepted twice, counted once.
        assert (await _post(client, ws["ingest"], today[:5]))["accepted"] == 5
        days = await _when_exact(client, ws["read"], now.date(), {now.date(): 30, now.date() - timedelta(days=1): 5})
    assert all(d["gaps"] == {"topic": 0, "raw": 0, "rollup": 0} for d in days.values())

    # Every record and tally read again by a second consumer group: the ledger does not move.
    async with serving([_rollup(iso, group_id="replay")]) as client:

        async def replayed() -> bool:
            return await lag(iso, "replay") == 0

        await eventually(replayed, timeout=60)
        await asyncio.sleep(1)  # the tallies' consumer runs beside it
        assert await _ledger(client, ws["read"], now.date()) == days


async def test_an_event_deleted_from_the_raw_table_shows_as_a_gap_and_raises_one_alert(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    now = datetime.now(UTC)
    today = now.date()
    events = [usage_event(timestamp=now.isoformat()) for _ in range(10)]
    rollup = _rollup(
        iso, completeness_grace_seconds=2.0, completeness_check_seconds=0.3, reconcile_interval_seconds=0.5
    )
    async with serving([create_ingest(iso.settings(IngestSettings)), rollup]) as client:
        await _post(client, ws["ingest"], events)
        await _when_exact(client, ws["read"], today, {today: 10})
        clickhouse_client(iso.stack.clickhouse).command(
            f"ALTER TABLE {iso.database}.usage_events DELETE WHERE workspace_id = {{ws:String}} "
            "AND event_id = {id:String} SETTINGS mutations_sync = 2",
            parameters={"ws": ws["workspace_id"], "id": events[3]["event_id"]},
        )

        async def gap() -> dict[str, Any] | None:
            day = (await _ledger(client, ws["read"], today))[today]
            return day if day["gaps"] == {"topic": 0, "raw": 1, "rollup": 0} else None

        day = await eventually(gap, timeout=30, interval=0.3)

        async def raised() -> list[DataAlert] | None:
            found = [a for a in await _data_alerts(iso) if a.kind == "completeness_gap"]
            return found or None

        await eventually(raised, timeout=30, interval=0.5)
        await asyncio.sleep(2)  # several more checks find the same gap
        alerts = [a for a in await _data_alerts(iso) if a.kind == "completeness_gap" and a.stage == "raw"]
        gauge = REGISTRY.get_sample_value("spendstream_completeness_gap_events", {"stage": "raw"})
    assert (day["accepted"], day["on_topic"], day["stored_raw"], day["in_rollup"]) == (10, 10, 9, 9)
    assert [(a.workspace_id, a.day, a.gap_events) for a in alerts] == [(ws["workspace_id"], today.isoformat(), 1)]
    assert gauge == 1


async def test_an_envelope_rollup_cannot_read_counts_as_dead_lettered_on_its_events_days(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    async with publisher(iso) as pub, serving([_rollup(iso)]) as client:
        # As ingest would publish it: an envelope (whose plaintext is not an event batch) and its tally.
        value = await pub.invalid_plaintext(ws["workspace_id"], b'{"not": "events"}')
        envelope = BatchEnvelope.model_validate_json(value)
        tally = IngestTally(
            workspace_id=ws["workspace_id"], batch_id=envelope.batch_id, days={yesterday: 1}, at=envelope.ingested_at
        )
        await pub.raw(value, key=ws["workspace_id"].encode())
        await pub.producer.send_and_wait(
            topic_name(INGEST_TALLIES, iso.prefix), INGEST_TALLIES.record.encode(tally), key=b"w"
        )
        await pub.batch(ws["workspace_id"], [usage_event(timestamp=_noon(yesterday).isoformat())])

        async def counted() -> dict[str, Any] | None:
            day = (await _ledger(client, ws["read"], today)).get(yesterday)
            counts = ("accepted", "dead_lettered", "on_topic", "stored_raw", "in_rollup")
            return day if day and all(day[c] == 1 for c in counts) else None

        day = await eventually(counted, timeout=30, interval=0.3)
    # The readable envelope had no tally (not ingest's): on the topic, not accepted.
    assert day["gaps"] == {"topic": -1, "raw": 0, "rollup": 0}
