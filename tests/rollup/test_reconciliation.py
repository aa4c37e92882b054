"""Reconciliation with the provider's bill over the real pipeline: ingest meters events, the connectors service
reads a local server answering as OpenAI's Usage and Costs APIs, rollup stores both; `/v1/reconciliation`
answers exactly what was metered beside exactly what the server reported, a settled cost drift above the
threshold raises one alert (and one within it none), the admin key appears in clear on no topic, and once the
workspace's data keys are shredded the sealed key no longer opens."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from spendstream.common.kafka import make_broker
from spendstream.common.records import ConnectorRecord, DataAlert, ProviderDay, ProviderUsage, TagMapping
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import CONNECTORS_CONFIG, CONNECTORS_USAGE, DATA_KEYS, ROLLUP_ALERTS, topic_name
from spendstream.connectors.app import create_service as create_connectors
from spendstream.connectors.sealing import NoDataKey, unseal
from spendstream.connectors.settings import ConnectorsSettings
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.provider_figures import ProviderFigures
from spendstream.rollup.reconciliation import Reconciliation, scopes
from spendstream.rollup.schema import migrate
from spendstream.rollup.settings import RollupSettings
from tests.connectors.fake_providers import Figures, provider_server
from tests.ingest.topics import read_all, topic_names
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()
YESTERDAY = TODAY - timedelta(days=1)
NOON = datetime(YESTERDAY.year, YESTERDAY.month, YESTERDAY.day, 12, tzinfo=UTC)
ADMIN_KEY = "sk-admin-reconcile-Zq81xW40pLm3"


async def _records(iso: Isolation, only: str | None = None) -> list[bytes]:
    """Every key and value on every topic of the isolation (or on topic `only`), each read up to its current end."""
    names = [t for t in await topic_names(iso.stack.kafka, iso.prefix) if only in (None, t)]
    return [(r.key or b"") + b"|" + (r.value or b"") for name in names for r in await read_all(iso.stack.kafka, name)]


async def _alerts(iso: Isolation) -> list[DataAlert]:
    records = await read_all(iso.stack.kafka, topic_name(ROLLUP_ALERTS, iso.prefix))
    return [ROLLUP_ALERTS.record.decode(r.value) for r in records if r.value]


def _events(n: int, model: str, cost: float) -> list[dict[str, Any]]:
    return [
        usage_event(model=model, cost_usd=cost, cached_input_tokens=100, timestamp=NOON.isoformat()) for _ in range(n)
    ]


async def test_reconciliation_equals_metered_and_billed_and_a_drift_alerts_once(
    iso: Isolation, caplog: pytest.LogCaptureFixture
) -> None:
    ws = await create_workspace(iso)
    with provider_server("openai", ADMIN_KEY) as (url, provider):
        # gpt-4o-mini as metered; gpt-4o billed 10 % above the meter (drift); gpt-4.1 3 % above (within 5 %).
        provider.data[(YESTERDAY, "gpt-4o-mini", "proj_a")] = Figures(4000, 800, Decimal("1.00"), 400, 4)
        provider.data[(YESTERDAY, "gpt-4o", "proj_a")] = Figures(2000, 400, Decimal("1.10"), 200, 2)
        provider.data[(YESTERDAY, "gpt-4.1", "proj_b")] = Figures(1000, 200, Decimal("1.03"), 100, 1)
        services = [
            create_ingest(iso.settings(IngestSettings)),
            create_rollup(
                iso.settings(
                    RollupSettings, batch_timeout_ms=50, reconciliation_settle_seconds=0, drift_check_seconds=0.3
                )
            ),
            create_connectors(
                iso.settings(
                    ConnectorsSettings,
                    connector_openai_base_url=url,
                    connector_pull_seconds=0.5,
                    connector_backfill_days=3,
                )
            ),
        ]
        async with serving(services) as client:
            events = _events(4, "gpt-4o-mini", 0.25) + _events(2, "gpt-4o", 0.5) + _events(1, "gpt-4.1", 1)
            r = await client.post("/v1/events", json={"events": events}, headers=auth(ws["ingest"]))
            assert r.status_code == 202, r.text
            r = await client.post(
                "/v1/connectors", json={"provider": "openai", "admin_key": ADMIN_KEY}, headers=auth(ws["admin"])
            )
            assert r.status_code == 201, r.text
            created = r.json()
            assert created["key_hint"] == "…" + ADMIN_KEY[-4:] and ADMIN_KEY not in r.text
            r = await client.post(
                "/v1/connectors", json={"provider": "openai", "admin_key": ADMIN_KEY}, headers=auth(ws["read"])
            )
            assert r.status_code == 403

            params = {"from": YESTERDAY.isoformat(), "to": YESTERDAY.isoformat(), "group_by": "day,provider,model"}

            async def reconciled() -> list[dict[str, Any]] | None:
                r = await client.get("/v1/reconciliation", params=params, headers=auth(ws["read"]))
                assert r.status_code == 200, r.text
                rows: list[dict[str, Any]] = r.json()["rows"]
                complete = len(rows) == 3 and all(
                    row["metered"]["requests"] and row["reported"]["cost"] for row in rows
                )
                return rows if complete else None

            rows = {row["model"]: row for row in await eventually(reconciled, timeout=60, interval=0.3)}
            mini = rows["gpt-4o-mini"]
            assert mini["metered"] == {
                "input_tokens": 4000,
                "cached_input_tokens": 400,
                "cache_creation_input_tokens": 0,
                "cache_creation_1h_input_tokens": 0,
                "output_tokens": 800,
                "requests": 4,
                "cost": "1.000000000",
            }
            assert mini["reported"]["input_tokens"] == 4000 and mini["reported"]["requests"] == 4
            assert Decimal(mini["reported"]["cost"]) == Decimal("1.00")
            assert Decimal(mini["difference"]["cost"]) == 0 and mini["difference_pct"]["cost"] == "0.00"
            assert mini["settled"] is True and mini["day"] == YESTERDAY.isoformat()
            assert Decimal(rows["gpt-4o"]["difference"]["cost"]) == Decimal("-0.10")
            assert rows["gpt-4o"]["difference_pct"]["cost"] == "-9.09"
            assert rows["gpt-4.1"]["difference_pct"]["cost"] == "-2.91"

            by_provider = await client.get(
                "/v1/reconciliation", params={**params, "group_by": "provider"}, headers=auth(ws["read"])
            )
            (total,) = by_provider.json()["rows"]
            assert total["metered"]["requests"] == 7 and Decimal(total["reported"]["cost"]) == Decimal("3.13")

            async def drifted() -> list[DataAlert] | None:
                found = [a for a in await _alerts(iso) if a.kind == "provider_drift"]
                return found or None

            await eventually(drifted, timeout=30, interval=0.5)
            await asyncio.sleep(2)  # several more drift rounds and pulls: nothing is raised twice
            (alert,) = [a for a in await _alerts(iso) if a.kind == "provider_drift"]
            assert (alert.model, alert.day, alert.provider) == ("gpt-4o", YESTERDAY.isoformat(), "openai")
            assert (alert.metered_cost, Decimal(alert.provider_cost or "")) == ("1.000000000", Decimal("1.10"))

            status = await client.get(f"/v1/connectors/{created['connector_id']}", headers=auth(ws["admin"]))
            assert status.json()["status"] == "ok" and ADMIN_KEY not in status.text
        assert provider.methods() == {"GET"}

    # The admin key in clear: on no topic, in no log line.
    assert not [r for r in await _records(iso) if ADMIN_KEY.encode() in r]
    assert ADMIN_KEY not in caplog.text

    # Crypto-shredding: once the workspace's data keys are tombstoned, the sealed key on the topic opens nowhere.
    settings = iso.settings(BaseServiceSettings)
    keyring = KeyRing(settings)
    await keyring.table.start()
    try:
        configs = await _records(iso, topic_name(CONNECTORS_CONFIG, iso.prefix))
        record = CONNECTORS_CONFIG.record.decode(configs[-1].split(b"|", 1)[1])
        assert await unseal(keyring, record.workspace_id, record.connector_id, record.key_version, record.sealed_key)
        broker = make_broker(settings, "tests")
        await broker.connect()
        try:
            for key in keyring.records(ws["workspace_id"]):
                await broker.publish(None, topic_name(DATA_KEYS, iso.prefix), key=key.encode())
        finally:
            await broker.stop()
        await keyring.table.catch_up()
        with pytest.raises(NoDataKey):
            await unseal(keyring, record.workspace_id, record.connector_id, record.key_version, record.sealed_key)
    finally:
        await keyring.table.stop()


async def test_a_refused_key_shows_as_unauthorised(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    with provider_server("anthropic", "the-right-key-000") as (url, provider):
        services = [
            create_connectors(
                iso.settings(ConnectorsSettings, connector_anthropic_base_url=url, connector_pull_seconds=3600)
            )
        ]
        async with serving(services) as client:
            r = await client.post(
                "/v1/connectors",
                json={"provider": "anthropic", "admin_key": "sk-ant-admin-wrong-key"},
                headers=auth(ws["admin"]),
            )
            connector_id = r.json()["connector_id"]

            async def refused() -> dict[str, Any] | None:
                shown: dict[str, Any] = (
                    await client.get(f"/v1/connectors/{connector_id}", headers=auth(ws["admin"]))
                ).json()
                return shown if shown["status"] == "unauthorised" else None

            await eventually(refused, timeout=30)
            # Rounds are an hour apart here: the first ran because the new connector woke the loop.
            listed = (await client.get("/v1/connectors", headers=auth(ws["admin"]))).json()["connectors"]
            assert [c["connector_id"] for c in listed] == [connector_id]
            assert (await client.delete(f"/v1/connectors/{connector_id}", headers=auth(ws["admin"]))).status_code == 204
            gone = await client.get(f"/v1/connectors/{connector_id}", headers=auth(ws["admin"]))
            assert gone.status_code == 404
        assert provider.methods() == {"GET"}
    alerts = [a for a in await _alerts(iso) if a.kind == "connector_unauthorised"]
    assert [a.connector_id for a in alerts] == [connector_id]


async def test_reconciliation_refuses_an_unknown_group(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with serving([create_rollup(iso.settings(RollupSettings))]) as client:
        r = await client.get("/v1/reconciliation", params={"group_by": "feature"}, headers=auth(ws["read"]))
        assert r.status_code == 422 and r.json()["error"] == "invalid_group_by"
        r = await client.get("/v1/reconciliation", headers=auth(ws["ingest"]))
        assert r.status_code == 403
        assert isinstance(client, httpx.AsyncClient)


async def test_a_csv_with_one_bad_line_stores_nothing_and_a_valid_one_reaches_reconciliation(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    header = "day,provider,model,input_tokens,output_tokens,requests,cost\n"
    good = f"{YESTERDAY.isoformat()},mistral,mistral-large,1200,300,3,0.42\n"
    bad = f"{YESTERDAY.isoformat()},mistral,mistral-small,12,3,1,NaN\n"
    services = [
        create_rollup(iso.settings(RollupSettings, batch_timeout_ms=50)),
        create_connectors(iso.settings(ConnectorsSettings)),
    ]
    async with serving(services) as client:
        r = await client.post("/v1/connectors/import", content=header + good + bad, headers=auth(ws["admin"]))
        assert r.status_code == 422
        assert (r.json()["field"], r.json()["code"]) == ("body.line.3.cost", "invalid_cost")
        assert "NaN" not in r.text
        assert await _records(iso, topic_name(CONNECTORS_USAGE, iso.prefix)) == []

        r = await client.post("/v1/connectors/import", content=header + good, headers=auth(ws["admin"]))
        assert r.status_code == 200, r.text
        assert r.json() == {"imported": [{"provider": "mistral", "day": YESTERDAY.isoformat(), "rows": 1}]}
        params = {"from": YESTERDAY.isoformat(), "to": YESTERDAY.isoformat()}

        async def imported() -> list[dict[str, Any]] | None:
            rows: list[dict[str, Any]] = (
                await client.get("/v1/reconciliation", params=params, headers=auth(ws["read"]))
            ).json()["rows"]
            return rows or None

        (row,) = await eventually(imported, timeout=30, interval=0.3)
        assert (row["provider"], row["model"]) == ("mistral", "mistral-large")
        assert row["reported"]["input_tokens"] == 1200 and row["reported"]["requests"] == 3
        assert Decimal(row["reported"]["cost"]) == Decimal("0.42")


def _usage_daily(client: Any, db: str, ws: str, feature: str, requests: int, cost: str) -> None:
    client.insert(
        f"{db}.usage_daily",
        [
            (
                ws,
                YESTERDAY,
                "openai",
                "gpt-4o",
                feature,
                "reported",
                requests,
                100 * requests,
                10 * requests,
                Decimal(cost),
            )
        ],
        column_names=[
            "workspace_id",
            "day",
            "provider",
            "model",
            "feature",
            "cost_source",
            "requests",
            "input_tokens",
            "output_tokens",
            "cost_usd",
        ],
    )


async def test_a_tag_mapping_narrows_both_sides_and_a_day_settles_after_the_delay(iso: Isolation) -> None:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    ws = "ws_map"
    _usage_daily(client, iso.database, ws, "search", 3, "0.30")
    _usage_daily(client, iso.database, ws, "chat", 5, "0.50")
    read_at = datetime.combine(TODAY, datetime.min.time(), UTC) + timedelta(hours=6)
    figures = ProviderFigures(client, iso.database)
    figures.store(
        [
            ProviderDay(
                workspace_id=ws,
                connector_id="con_m",
                provider="openai",
                day=YESTERDAY,
                rows=(
                    ProviderUsage(
                        model="gpt-4o",
                        project="proj_s",
                        input_tokens=300,
                        output_tokens=30,
                        requests=3,
                        cost=Decimal("0.33"),
                    ),
                    ProviderUsage(
                        model="gpt-4o",
                        project="proj_c",
                        input_tokens=500,
                        output_tokens=50,
                        requests=5,
                        cost=Decimal("0.50"),
                    ),
                ),
                source="api",
                pulled_at=read_at,
            )
        ]
    )
    connector = ConnectorRecord(
        connector_id="con_m",
        workspace_id=ws,
        provider="openai",
        key_version=1,
        sealed_key=b"x",
        key_hint="abcd",
        mapping=TagMapping(tag="feature", values={"search": "proj_s"}),
        created_at=read_at,
    )
    narrow = scopes([connector], ws)
    # Read 6 hours after the day ended: settled under a 1-hour delay, not under a 1-day one.
    for settle, settled in ((3600.0, True), (86400.0, False)):
        reconciliation = Reconciliation(client, iso.database, figures, settle)
        (row,) = reconciliation.rows(ws, YESTERDAY, YESTERDAY, ["day", "provider", "model"], narrow, read_at)
        assert row["settled"] is settled
    assert (row["metered"]["requests"], row["metered"]["cost"]) == (3, "0.300000000")
    assert (row["reported"]["requests"], Decimal(row["reported"]["cost"])) == (3, Decimal("0.33"))
    assert row["difference_pct"]["cost"] == "-9.09"
    (whole,) = Reconciliation(client, iso.database, figures, 0).rows(ws, YESTERDAY, YESTERDAY, ["model"], {}, read_at)
    assert (whole["metered"]["requests"], Decimal(whole["reported"]["cost"])) == (8, Decimal("0.83"))
