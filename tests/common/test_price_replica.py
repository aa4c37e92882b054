"""The replayed price book against real pricing topics: what one replica publishes, a replica started later (a
restart) prices with; deletions and an erased workspace's rates are gone on replay; a record filed under
another key than its own changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import resources

import pytest
from aiokafka import AIOKafkaProducer

from spendstream.common.kafka import make_broker
from spendstream.common.price_holds import propose
from spendstream.common.price_replica import PricePublisher, ReplayedPriceBook, forget_rates
from spendstream.common.pricebook import PriceBook, TenantRate
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import PRICE_RATES, topic_name
from tests.support import Isolation

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def rate(workspace_id: str, rate_id: str) -> TenantRate:
    return TenantRate(
        rate_id=rate_id,
        workspace_id=workspace_id,
        effective_from=date(2026, 3, 1),
        kind="discount",
        percent=Decimal(10),
        created_at=NOW,
        created_by="test",
    )


async def test_a_restarted_replica_prices_with_what_was_published(iso: Isolation) -> None:
    settings = iso.settings(BaseServiceSettings)
    broker = make_broker(settings, "tests")
    await broker.connect()
    first = ReplayedPriceBook(settings)
    await first.start()
    try:
        publisher = PricePublisher(broker, iso.prefix)
        table = _shipped()
        table["gpt-4o"]["input_cost_per_token"] = 5e-06
        version = propose(PriceBook(), json.dumps(table).encode(), "t.json", date(2026, 3, 10), set(), NOW)
        assert version is not None
        await publisher.version(version)
        for ws, rid in (("ws-a", "r1"), ("ws-a", "r2"), ("ws-b", "r1")):
            await publisher.rate(rate(ws, rid))
        await first.catch_up()
        assert first.book.table_at(date(2026, 3, 10))[0] == version.meta.version_id
        await publisher.delete_rate("ws-b", "r1")
        assert await forget_rates(first, publisher, "ws-a") == 2
        await publisher.rate(rate("ws-c", "kept"))
        # A rate filed under another workspace's key is not that workspace's.
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(
                topic_name(PRICE_RATES, iso.prefix), rate("ws-c", "x").model_dump_json().encode(), key=b"ws-d/x"
            )
        finally:
            await producer.stop()
    finally:
        await first.stop()
        await broker.stop()

    restarted = ReplayedPriceBook(settings)
    await restarted.start()
    try:
        book = restarted.book
        assert [v.version_id for v in book.versions()] == [version.meta.version_id]
        _, in_force = book.table_at(date(2026, 3, 10))
        price = in_force.lookup("openai", "gpt-4o")
        assert price is not None and price.input == Decimal("0.000005")
        assert book.rates("ws-a") == [] and book.rates("ws-b") == [] and book.rates("ws-d") == []
        assert [r.rate_id for r in book.rates("ws-c")] == ["kept"]
    finally:
        await restarted.stop()


def _shipped() -> dict[str, dict[str, object]]:
    text = resources.files("spendstream.common").joinpath("data", "litellm_model_prices.json").read_text()
    data: dict[str, dict[str, object]] = json.loads(text)
    return data
