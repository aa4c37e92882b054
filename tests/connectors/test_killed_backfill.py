"""A connector killed mid-backfill, for real: the connectors service runs as an OS process against a local server
answering as OpenAI's Usage and Costs APIs, is SIGKILLed while a page of its second backfill window is in
flight, and is started again. It resumes from its cursor, and the provider figures rollup stores from
`connectors.usage.v1` (every record of the topic, re-reads included) equal what the server reported, to the
token and the cent: no day missing, none counted twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from spendstream.common.records import ConnectorState, ProviderDay
from spendstream.common.topics import CONNECTORS_STATE, CONNECTORS_USAGE
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.provider_figures import ProviderFigures
from spendstream.rollup.schema import migrate
from tests.connectors.fake_providers import Figures, ProviderState, provider_server
from tests.retention.pipeline import replay
from tests.support import Isolation, ServiceProcess, auth, create_workspace, eventually

pytestmark = pytest.mark.integration

ADMIN_KEY = "sk-admin-killed-Vb52Qa81Lr07"
BACKFILL_DAYS = 9  # with today: 10 days, read in 5 windows of 2 days
WINDOW_DAYS = 2
# Each day is a page of its own, of usage and of costs: a window is 4 requests. The 7th is the second
# window's first costs page, the usage of that window read already.
HOLD_AT = 7


def _fill(state: ProviderState, today: date) -> None:
    for i in range(BACKFILL_DAYS + 1):
        day = today - timedelta(days=i)
        state.data[(day, "gpt-4o-mini", "proj_a")] = Figures(
            input_tokens=1000 + i, output_tokens=200 + i, cost=Decimal("0.123457") + i, cached=100 + i, requests=10 + i
        )
        state.data[(day, "gpt-4o", "proj_b")] = Figures(
            input_tokens=37 * i, output_tokens=7, cost=Decimal("1.5"), cached=0, requests=i
        )


def _starts(state: ProviderState, first: int) -> list[date]:
    """The start day of every request from the `first` (0-based) on."""
    return [datetime.fromtimestamp(int(q["start_time"][0]), UTC).date() for _, _, q in state.requests[first:]]


async def _cursor(iso: Isolation) -> ConnectorState | None:
    values = [CONNECTORS_STATE.record.decode(v) for _, v in await replay(iso, CONNECTORS_STATE) if v is not None]
    return values[-1] if values else None


async def test_a_connector_killed_mid_backfill_resumes_from_its_cursor_without_a_gap_or_a_double_count(
    iso: Isolation, tmp_path: Path
) -> None:
    ws = await create_workspace(iso)
    clickhouse = clickhouse_client(iso.stack.clickhouse)
    # rollup's schema, created meanwhile (the processes do not need it).
    migrating = asyncio.create_task(asyncio.to_thread(migrate, clickhouse, iso.database, 12))
    today = datetime.now(UTC).date()
    first_day = today - timedelta(days=BACKFILL_DAYS)
    with provider_server("openai", ADMIN_KEY) as (url, state):
        _fill(state, today)
        state.hold_at = HOLD_AT
        env = iso.env(
            connector_openai_base_url=url,
            connector_backfill_days=str(BACKFILL_DAYS),
            connector_window_days=str(WINDOW_DAYS),
            connector_trailing_days="3",
            connector_backoff_seconds="0.1",
            connector_pull_seconds="3600",
        )
        process = ServiceProcess("connectors", env, tmp_path / "connectors.log")
        process.start()
        try:
            async with httpx.AsyncClient(base_url=process.url) as client:
                created = await client.post(
                    "/v1/connectors", json={"provider": "openai", "admin_key": ADMIN_KEY}, headers=auth(ws["admin"])
                )
                assert created.status_code == 201, created.text
                connector_id = created.json()["connector_id"]
            assert state.held.wait(timeout=30), "the backfill never reached the held page"
        finally:
            process.kill()  # SIGKILL with the page in flight: no shutdown hook runs
            state.release.set()

        # Killed in the middle: the first window is published and its cursor stored, the second is not.
        interrupted = await _cursor(iso)
        assert interrupted is not None and interrupted.connector_id == connector_id
        assert interrupted.next_day == first_day + timedelta(days=WINDOW_DAYS) and interrupted.status == "pending"
        before = [ProviderDay.model_validate_json(v or b"") for _, v in await replay(iso, CONNECTORS_USAGE)]
        assert sorted(d.day for d in before) == [first_day, first_day + timedelta(days=1)]

        # Started again, with rounds close together, so that the trailing days are read more than once.
        restarted = ServiceProcess(
            "connectors", {**env, "SPENDSTREAM_CONNECTOR_PULL_SECONDS": "1"}, tmp_path / "connectors.log"
        )
        resumed_at = len(state.requests)
        restarted.start()
        try:

            async def reread() -> list[ProviderDay] | None:
                days = [ProviderDay.model_validate_json(v or b"") for _, v in await replay(iso, CONNECTORS_USAGE)]
                # 2 days before the kill, 8 after it, and the 4 trailing days of at least one more round.
                return days if len(days) >= 2 + 8 + 4 else None

            records = await eventually(reread, timeout=30)
            async with httpx.AsyncClient(base_url=restarted.url) as client:
                shown = await client.get(f"/v1/connectors/{connector_id}", headers=auth(ws["admin"]))
            assert shown.json()["status"] == "ok" and shown.json()["next_day"] == str(today + timedelta(days=1))
        finally:
            restarted.kill()

    # It resumed at its cursor: no day before it was asked for again.
    assert min(_starts(state, resumed_at)) == interrupted.next_day
    assert state.methods() == {"GET"}
    # Re-reads on the topic: the same day more than once.
    assert len(records) > len({d.key for d in records})

    # Stored as rollup stores them (every record, duplicates included), read back as /v1/reconciliation reads.
    await migrating
    figures = ProviderFigures(clickhouse, iso.database)
    figures.store(records)
    stored = {
        (r["day"], r["model"]): (
            r["input_tokens"],
            r["cached_input_tokens"],
            r["output_tokens"],
            r["requests"],
            r["cost"],
            r["currency"],
        )
        for r in figures.latest(ws["workspace_id"], first_day, today)
    }
    reported = {
        (day, model): (f.input_tokens, f.cached, f.output_tokens, f.requests, f.cost, "usd")
        for (day, model, _), f in state.data.items()
    }
    assert stored == reported
    assert len(stored) == 2 * (BACKFILL_DAYS + 1)
