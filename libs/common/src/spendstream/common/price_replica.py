"""The price book every service agrees on: replayed from `pricing.versions.v1` and `pricing.rates.v1`.

Both topics are compacted and read whole by every replica (kafka.CompactedTable), so rollup, alerts and the CLI
price with the same versions and rates once they have caught up; with empty topics the book is the bundled
table alone. The writers (rollup's refresh and API, `spendstream prices`) publish through `PricePublisher` and
then catch up, so their own next read sees what they wrote.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from spendstream.common.kafka import CompactedTable, Publisher
from spendstream.common.pricebook import PriceBook, TenantRate, VersionRecord, rate_key
from spendstream.common.prices import PriceTable
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import PRICE_RATES, PRICE_VERSIONS


class ReplayedPriceBook:
    """A PriceBook kept up to date from the pricing topics; `start` returns once it has caught up."""

    def __init__(self, settings: BaseServiceSettings, base: PriceTable | None = None) -> None:
        self.book = PriceBook(base)
        self.versions: CompactedTable[VersionRecord] = CompactedTable(settings, PRICE_VERSIONS, self._on_version)
        self.rates: CompactedTable[TenantRate] = CompactedTable(settings, PRICE_RATES, self._on_rate)

    def _on_version(self, key: str, value: VersionRecord | None) -> None:
        if value is None or value.meta.version_id != key:
            # A record under a key other than its own id would let one version shadow another.
            self.book.drop_version(key)
        else:
            self.book.put_version(value)

    def _on_rate(self, key: str, value: TenantRate | None) -> None:
        workspace_id, _, rate_id = key.partition("/")
        if value is not None and rate_key(value.workspace_id, value.rate_id) == key:
            self.book.put_rate(value)
        else:
            self.book.drop_rate(workspace_id, rate_id)

    async def start(self) -> None:
        # Versions carry whole tables: a replay parses each, which takes longer than a key table's catch-up.
        await self.versions.start(timeout=120.0)
        await self.rates.start()

    async def stop(self) -> None:
        await self.rates.stop()
        await self.versions.stop()

    async def catch_up(self) -> None:
        await self.versions.catch_up(timeout=60.0)
        await self.rates.catch_up()


class PricePublisher:
    """Publishes versions and rates; the caller's broker must be connected."""

    def __init__(self, broker: KafkaBroker, prefix: str) -> None:
        self._versions = Publisher(broker, PRICE_VERSIONS, prefix)
        self._rates = Publisher(broker, PRICE_RATES, prefix)

    async def version(self, record: VersionRecord) -> None:
        await self._versions.publish(record, key=record.meta.version_id)

    async def rate(self, rate: TenantRate) -> None:
        await self._rates.publish(rate, key=rate_key(rate.workspace_id, rate.rate_id))

    async def delete_rate(self, workspace_id: str, rate_id: str) -> None:
        await self._rates.tombstone(rate_key(workspace_id, rate_id))


async def forget_rates(pricing: ReplayedPriceBook, publisher: PricePublisher, workspace_id: str) -> int:
    """Tombstone every rate of an erased workspace; returns how many there were."""
    await pricing.catch_up()
    rates = pricing.book.rates(workspace_id)
    for rate in rates:
        await publisher.delete_rate(workspace_id, rate.rate_id)
    await pricing.catch_up()
    return len(rates)
