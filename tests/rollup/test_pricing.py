"""Dated price versions and tenant rates through the real services: rollup stores each event's cost under the
version and rate in force on its day, with the cost's source; alerts counts the very same amounts; both learn
the versions and rates by replaying the pricing topics when they start."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
import redis.asyncio as aioredis

from spendstream.alerts.app import create_service as create_alerts
from spendstream.alerts.keyspace import ALL, KeySpace
from spendstream.alerts.settings import AlertsSettings
from spendstream.common.kafka import make_broker
from spendstream.common.price_replica import PricePublisher
from spendstream.common.pricebook import PriceVersion, TenantRate, VersionRecord, digest_of, version_id
from spendstream.common.settings import BaseServiceSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.settings import RollupSettings
from tests.rollup.kafka import lag, publisher
from tests.support import Isolation, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)
TODAY = NOW.date()
D0, D1, D2, D3 = (TODAY - timedelta(days=3 - i) for i in range(4))


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0, ms: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, second, ms * 1000, tzinfo=UTC).isoformat()


def priced_version(day: date) -> VersionRecord:
    """The bundled table with gpt-4o-mini at twice its price, from `day`."""
    text = resources.files("spendstream.common").joinpath("data", "litellm_model_prices.json").read_text()
    data = json.loads(text)
    data["gpt-4o-mini"].update(
        input_cost_per_token=3e-07, output_cost_per_token=1.2e-06, cache_read_input_token_cost=1.5e-07
    )
    raw = json.dumps(data).encode()
    digest = digest_of(raw)
    meta = PriceVersion(
        version_id=version_id(day, digest),
        effective_from=day,
        created_at=NOW,
        source="file:test.json",
        digest=digest,
        models=0,
        status="active",
    )
    return VersionRecord(meta, raw)


def rate(workspace_id: str, rate_id: str, day: date, **fields: Any) -> TenantRate:
    return TenantRate(
        rate_id=rate_id, workspace_id=workspace_id, effective_from=day, created_at=NOW, created_by="test", **fields
    )


def computed(event_id: str, ts: str, model: str = "gpt-4o-mini", **fields: Any) -> dict[str, Any]:
    event = usage_event(
        event_id=event_id,
        model=model,
        input_tokens=10_000,
        cached_input_tokens=4_000,
        output_tokens=2_000,
        timestamp=ts,
        **fields,
    )
    del event["cost_usd"]
    return event


async def test_versions_and_rates_price_exactly_the_events_they_cover_in_rollup_and_alerts(iso: Isolation) -> None:
    a, b = await create_workspace(iso, "a"), await create_workspace(iso, "b")
    ws_a, ws_b = a["workspace_id"], b["workspace_id"]
    version = priced_version(D2)
    vid = version.meta.version_id
    # Published before the services start: they learn them by replaying the topics.
    settings = iso.settings(BaseServiceSettings)
    broker = make_broker(settings, "tests")
    await broker.connect()
    try:
        prices = PricePublisher(broker, iso.prefix)
        await prices.version(version)
        await prices.rate(rate(ws_a, "disc", D3, provider="openai", model="gpt-4o*", kind="discount", percent=25))
        await prices.rate(
            rate(ws_a, "fixed", D1, model="acme-*", kind="fixed", input=Decimal("1e-6"), output=Decimal("2e-6"))
        )
    finally:
        await broker.stop()

    # Old: 6000*1.5e-7 + 4000*7.5e-8 + 2000*6e-7; new (the version, from D2): twice that; ws a from D3: 25% off.
    expected = {
        "a-old": (ws_a, computed("a-old", at(D1, 23, 59, 59, 999)), "0.0024", "computed", "table:0"),
        "a-new": (ws_a, computed("a-new", at(D2, 0)), "0.0048", "computed", f"table:{vid}"),
        "a-disc": (ws_a, computed("a-disc", at(D3)), "0.0036", "computed", f"rate:disc/table:{vid}"),
        "b-new": (ws_b, computed("b-new", at(D3)), "0.0048", "computed", f"table:{vid}"),
        "a-reported": (ws_a, usage_event(event_id="a-reported", cost_usd=0.5, timestamp=at(D3)), "0.5", "reported", ""),
        # Not in any table: unknown until the fixed rate's day, and for the other workspace.
        "a-acme-before": (ws_a, computed("a-acme-before", at(D0), model="acme-large"), "0", "unknown", ""),
        # (10000 - 4000)*1e-6 + 4000*1e-6 (cached at the input rate) + 2000*2e-6
        "a-acme": (ws_a, computed("a-acme", at(D1), model="acme-large"), "0.014", "computed", "rate:fixed"),
        "b-acme": (ws_b, computed("b-acme", at(D1), model="acme-large"), "0", "unknown", ""),
    }
    rollup_settings = iso.settings(RollupSettings, batch_timeout_ms=50)
    alerts_settings = iso.settings(AlertsSettings, batch_timeout_ms=50, reconcile_interval_seconds=3600)
    async with serving([create_rollup(rollup_settings), create_alerts(alerts_settings)]):
        async with publisher(iso) as pub:
            for ws in (ws_a, ws_b):
                await pub.batch(ws, [e for w, e, *_ in expected.values() if w == ws])

        async def drained() -> bool:
            return await lag(iso) == 0 and await lag(iso, "spendstream-alerts") == 0

        await eventually(drained, timeout=60)

    client = clickhouse_client(iso.stack.clickhouse)
    rows = client.query(
        f"SELECT event_id, toString(cost_usd), toString(cost_source), price_ref FROM {iso.database}.usage_events FINAL"
    ).result_rows
    stored = {r[0]: (Decimal(r[1]), r[2], r[3]) for r in rows}
    assert stored == {k: (Decimal(cost), source, ref) for k, (_, _, cost, source, ref) in expected.items()}

    # alerts' day counters (integer nano-dollars) equal rollup's stored costs, day by day and workspace by workspace.
    keys = KeySpace(alerts_settings.redis_prefix, alerts_settings.kek_bytes())
    redis = aioredis.from_url(iso.stack.redis)
    try:
        for ws in (ws_a, ws_b):
            for day in (D0, D1, D2, D3):
                counted = int(await redis.get(keys.day_spend(ws, day, ALL)) or 0)
                total = sum(
                    (
                        Decimal(cost)
                        for w, e, cost, *_ in expected.values()
                        if w == ws and e["timestamp"][:10] == str(day)
                    ),
                    Decimal(0),
                )
                assert counted == int(total * 1_000_000_000), (ws, day)
    finally:
        await redis.aclose()
