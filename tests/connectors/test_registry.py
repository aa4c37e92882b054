"""The registry's writes of a pull round: a round still running for a connector that was deleted (or whose
workspace was erased) meanwhile writes neither its cursor nor a day back onto the topics."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from spendstream.common.kafka import make_broker
from spendstream.common.records import ConnectorRecord, ConnectorState, ProviderDay, ProviderUsage
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import CONNECTORS_STATE, CONNECTORS_USAGE
from spendstream.connectors.registry import Registry
from tests.retention.pipeline import replay
from tests.support import Isolation

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


def _connector(connector_id: str) -> ConnectorRecord:
    return ConnectorRecord(
        connector_id=connector_id,
        workspace_id="ws_r",
        provider="openai",
        key_version=1,
        sealed_key=b"sealed",
        key_hint="abcd",
        created_at=NOW,
    )


def _state(connector: ConnectorRecord) -> ConnectorState:
    return ConnectorState(
        connector_id=connector.connector_id,
        workspace_id=connector.workspace_id,
        next_day=date(2026, 3, 19),
        status="pending",
        updated_at=NOW,
    )


def _day(connector: ConnectorRecord) -> ProviderDay:
    row = ProviderUsage(model="gpt-4o", input_tokens=10, output_tokens=2, requests=1)
    return ProviderDay(
        workspace_id=connector.workspace_id,
        connector_id=connector.connector_id,
        provider="openai",
        day=date(2026, 3, 18),
        rows=(row,),
        source="api",
        pulled_at=NOW,
    )


async def test_a_round_of_a_deleted_connector_writes_no_cursor_and_no_day_while_a_live_one_does(
    iso: Isolation,
) -> None:
    settings = iso.settings(BaseServiceSettings)
    broker = make_broker(settings, "tests")
    registry = Registry(settings, broker, KeyRing(settings))
    await broker.connect()
    await registry.start()
    try:
        live, gone = _connector("con_live"), _connector("con_gone")
        for connector in (live, gone):
            await registry.save(connector)
        async with registry.lock:
            await registry.delete(gone)
        for connector in (live, gone):  # the round goes on for both, as it would mid-pull
            await registry.publish_pulled(_day(connector))
            await registry.save_state(_state(connector))
    finally:
        await registry.stop()
        await broker.stop()
    states = [(k, v) for k, v in await replay(iso, CONNECTORS_STATE)]
    assert [k for k, v in states if v is not None] == [b"ws_r/con_live"]
    assert [k for k, v in states if v is None] == [b"ws_r/con_gone"]  # the deletion's tombstone only
    days = [ProviderDay.model_validate_json(v or b"") for _, v in await replay(iso, CONNECTORS_USAGE)]
    assert [d.connector_id for d in days] == ["con_live"]
