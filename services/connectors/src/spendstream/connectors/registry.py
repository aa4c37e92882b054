"""The connectors and their states, replayed from their compacted topics, and every write to them."""

from __future__ import annotations

import asyncio
import logging

from faststream.kafka import KafkaBroker

from spendstream.common.kafka import CompactedTable, Publisher
from spendstream.common.records import ConnectorRecord, ConnectorState, DataAlert, ProviderDay
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import CONNECTORS_CONFIG, CONNECTORS_STATE, CONNECTORS_USAGE, ROLLUP_ALERTS
from spendstream.connectors.puller import Puller
from spendstream.connectors.sealing import NoDataKey, unseal

log = logging.getLogger(__name__)


def record_key(workspace_id: str, connector_id: str) -> str:
    return f"{workspace_id}/{connector_id}"


class Registry:
    def __init__(self, settings: BaseServiceSettings, broker: KafkaBroker, keyring: KeyRing) -> None:
        prefix = settings.topic_prefix
        self.configs: CompactedTable[ConnectorRecord] = CompactedTable(settings, CONNECTORS_CONFIG)
        self.states: CompactedTable[ConnectorState] = CompactedTable(settings, CONNECTORS_STATE)
        self._configs_out = Publisher(broker, CONNECTORS_CONFIG, prefix)
        self._states_out = Publisher(broker, CONNECTORS_STATE, prefix)
        self._usage_out = Publisher(broker, CONNECTORS_USAGE, prefix)
        self._alerts_out = Publisher(broker, ROLLUP_ALERTS, prefix)
        self.keyring = keyring
        self.wake = asyncio.Event()  # set on a new connector: its backfill starts now, not at the next round

    async def start(self) -> None:
        await self.configs.start()
        await self.states.start()

    async def stop(self) -> None:
        await self.states.stop()
        await self.configs.stop()

    def of_workspace(self, workspace_id: str) -> list[ConnectorRecord]:
        return sorted((c for c in self.configs.values() if c.workspace_id == workspace_id), key=lambda c: c.created_at)

    def get(self, workspace_id: str, connector_id: str) -> ConnectorRecord | None:
        return self.configs.get(record_key(workspace_id, connector_id))

    def state(self, connector: ConnectorRecord) -> ConnectorState | None:
        return self.states.get(record_key(connector.workspace_id, connector.connector_id))

    async def save(self, connector: ConnectorRecord) -> None:
        await self._configs_out.publish(connector, record_key(connector.workspace_id, connector.connector_id))
        await self.configs.catch_up()

    async def delete(self, connector: ConnectorRecord) -> None:
        key = record_key(connector.workspace_id, connector.connector_id)
        await self._configs_out.tombstone(key)
        await self._states_out.tombstone(key)
        await self.configs.catch_up()
        await self.states.catch_up()

    async def save_state(self, state: ConnectorState) -> None:
        await self._states_out.publish(state, record_key(state.workspace_id, state.connector_id))

    async def publish_day(self, day: ProviderDay) -> None:
        await self._usage_out.publish(day, day.key)

    async def alert(self, alert: DataAlert) -> None:
        await self._alerts_out.publish(alert, alert.workspace_id)

    async def pull_all(self, puller: Puller) -> None:
        """One round of every API connector; a connector whose data key is gone (erased) is skipped."""
        for connector in list(self.configs.values()):
            if connector.provider == "csv":
                continue
            try:
                admin_key = await unseal(
                    self.keyring,
                    connector.workspace_id,
                    connector.connector_id,
                    connector.key_version,
                    connector.sealed_key,
                )
            except NoDataKey:
                continue
            try:
                await puller.pull(connector, admin_key, self.state(connector))
            except Exception as exc:  # one connector's failure must not hold the others back
                log.warning(
                    "connector round failed",
                    extra={"connector_id": connector.connector_id, "error": type(exc).__name__},
                )
