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
        # Held by a deletion (a workspace's erasure, DELETE /v1/connectors/..) and by a pull round's writes: a
        # round still running for a removed connector must not write its cursor or a day back afterwards.
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        await self.configs.start()
        await self.states.start()

    async def stop(self) -> None:
        await self.states.stop()
        await self.configs.stop()

    async def catch_up(self) -> None:
        await self.configs.catch_up()
        await self.states.catch_up()

    def of_workspace(self, workspace_id: str) -> list[ConnectorRecord]:
        return sorted((c for c in self.configs.values() if c.workspace_id == workspace_id), key=lambda c: c.created_at)

    def get(self, workspace_id: str, connector_id: str) -> ConnectorRecord | None:
        return self.configs.get(record_key(workspace_id, connector_id))

    def states_of_workspace(self, workspace_id: str) -> list[ConnectorState]:
        return sorted((s for s in self.states.values() if s.workspace_id == workspace_id), key=lambda s: s.connector_id)

    def state(self, connector: ConnectorRecord) -> ConnectorState | None:
        return self.states.get(record_key(connector.workspace_id, connector.connector_id))

    async def save(self, connector: ConnectorRecord) -> None:
        await self._configs_out.publish(connector, record_key(connector.workspace_id, connector.connector_id))
        await self.configs.catch_up()

    async def delete(self, connector: ConnectorRecord) -> None:
        """Tombstone the connector (its sealed key) and its cursor; the caller holds `lock`."""
        key = record_key(connector.workspace_id, connector.connector_id)
        await self._configs_out.tombstone(key)
        await self._states_out.tombstone(key)
        await self.catch_up()

    async def delete_state(self, workspace_id: str, connector_id: str) -> None:
        """Tombstone a cursor alone; the caller holds `lock`."""
        await self._states_out.tombstone(record_key(workspace_id, connector_id))
        await self.states.catch_up()

    async def save_state(self, state: ConnectorState) -> None:
        """A pull round's cursor; dropped once its connector is deleted (or its workspace erased)."""
        async with self.lock:
            if self.get(state.workspace_id, state.connector_id) is None:
                return
            await self._states_out.publish(state, record_key(state.workspace_id, state.connector_id))

    async def publish_pulled(self, day: ProviderDay) -> None:
        """A pull round's day; dropped once its connector is deleted (or its workspace erased)."""
        async with self.lock:
            if self.get(day.workspace_id, day.connector_id) is None:
                return
            await self._usage_out.publish(day, day.key)

    async def publish_day(self, day: ProviderDay) -> None:
        """An imported day (its connector is the provider's CSV pseudo-connector, with no record)."""
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
