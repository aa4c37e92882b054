"""Counting spend, on the real Redis and on its in-memory stand-in: each Kafka record once, whatever is
redelivered or replayed."""

from __future__ import annotations

from datetime import UTC, datetime

from spendstream.alerts.keyspace import ALL
from tests.alerts.helpers import event, record, rig
from tests.support import Isolation

NOW = datetime.now(UTC)
MONTH = NOW.strftime("%Y-%m")


async def test_a_redelivered_or_replayed_record_counts_once(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        batch = [
            record("ws1", event("1.5", NOW), event("2.25", NOW), offset=10),
            record("ws1", event("4", NOW), offset=11),
        ]
        assert await r.counter.count(batch, {}) == 2
        assert await r.counter.count(batch, {}) == 0  # redelivery of the whole batch
        assert await r.counter.count(batch[:1], {}) == 0  # a replay from an earlier offset
        assert await r.counter.month_to_date("ws1", MONTH, ALL) == 7_750_000_000


async def test_partitions_and_workspaces_are_counted_independently(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        assert (
            await r.counter.count(
                [
                    record("ws1", event("1", NOW), partition=0, offset=5),
                    record("ws1", event("1", NOW), partition=1, offset=5),
                    record("ws2", event("1", NOW), partition=0, offset=5),
                ],
                {},
            )
            == 3
        )
        assert await r.counter.month_to_date("ws1", MONTH, ALL) == 2_000_000_000
        assert await r.counter.month_to_date("ws2", MONTH, ALL) == 1_000_000_000


async def test_events_without_cost_are_priced_and_unknown_models_count_zero(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        # gpt-4o-mini: 1.5e-7 per input and 6e-7 per output token; 1000 of each is 0.00075 USD.
        await r.counter.count([record("ws1", event(None, NOW), event(None, NOW, model="no-such-model-x"))], {})
        assert await r.counter.month_to_date("ws1", MONTH, ALL) == 750_000


async def test_live_spend_prices_cache_writes_and_the_service_tier(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        writes = event(
            None,
            NOW,
            provider="anthropic",
            model="claude-sonnet-4-5",
            input_tokens=10_000,
            cached_input_tokens=2_000,
            cache_creation_input_tokens=5_000,
            cache_creation_1h_input_tokens=1_000,
            output_tokens=300,
        )
        # gpt-5 flex: 6.25e-7 per input, 5e-6 per output token.
        flex = event(None, NOW, model="gpt-5", service_tier="flex")
        await r.counter.count([record("ws1", writes, flex)], {})
        # 3000*3e-6 + 2000*3e-7 + 4000*3.75e-6 + 1000*6e-6 + 300*1.5e-5 = 0.0351; 1000*6.25e-7 + 1000*5e-6
        assert await r.counter.month_to_date("ws1", MONTH, ALL) == 35_100_000 + 5_625_000


async def test_tag_scopes_are_counted_only_when_budgeted_and_keyed_without_the_value(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        tags = {"customer_id": "cust-42", "feature": "chat"}
        await r.counter.count([record("ws1", event("3", NOW, tags=tags))], {"ws1": {("customer_id", "cust-42")}})
        customer = r.keys.scope("ws1", "customer_id", "cust-42")
        assert await r.counter.month_to_date("ws1", MONTH, customer) == 3_000_000_000
        assert await r.counter.month_to_date("ws1", MONTH, r.keys.scope("ws1", "feature", "chat")) == 0
        keys = await r.stored_keys()
        assert keys and not any("cust-42" in k for k in keys)
