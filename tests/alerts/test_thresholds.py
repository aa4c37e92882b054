"""What fires, on the real Redis and on its in-memory stand-in: each threshold once per budget and period,
whatever evaluates it how often."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from spendstream.alerts.periods import month_end, month_start
from spendstream.common.records import BudgetScope
from tests.alerts.helpers import budget, rig
from tests.support import Isolation

# The real clock: counters expire relative to it, so a fixed date would age out of Redis as the calendar moves.
# Kept five minutes clear of the month's end: the lease tests evaluate up to 100 s later in the same month.
NOW = min(datetime.now(UTC), month_end(datetime.now(UTC)) - timedelta(minutes=5))


async def test_a_jump_over_several_thresholds_fires_each_once_however_many_evaluate_at_once(
    backend: Isolation | None,
) -> None:
    async with rig(backend) as r:
        b = budget()
        await r.spend("ws1", "80", NOW)
        await asyncio.gather(*(r.evaluator.evaluate(b, NOW) for _ in range(10)))
        assert [a.threshold_pct for a in r.published] == [75]
        await r.spend("ws1", "25", NOW)  # 105: 90 and 100 in one step
        await asyncio.gather(*(r.evaluator.evaluate(b, NOW) for _ in range(10)))
        assert sorted(a.threshold_pct or 0 for a in r.published) == [75, 90, 100]
        assert len({a.alert_id for a in r.published}) == 3


async def test_one_threshold_never_silences_another(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        b = budget(thresholds=(85, 95))
        await r.spend("ws1", "86", NOW)
        await r.evaluator.evaluate(b, NOW)
        await r.spend("ws1", "10", NOW)
        await r.evaluator.evaluate(b, NOW)
        assert [a.threshold_pct for a in r.published] == [85, 95]


async def test_a_claim_whose_publish_failed_is_taken_over_after_the_lease_with_the_same_alert_id(
    backend: Isolation | None,
) -> None:
    async with rig(backend, lease_seconds=30) as r:
        b = budget(thresholds=(50,))
        await r.spend("ws1", "60", NOW)
        r.fail_next_publish = True
        with pytest.raises(ConnectionError):
            await r.evaluator.evaluate(b, NOW)
        assert await r.evaluator.evaluate(b, NOW + timedelta(seconds=10)) == []  # lease still held
        [alert] = await r.evaluator.evaluate(b, NOW + timedelta(seconds=31))
        assert await r.evaluator.evaluate(b, NOW + timedelta(seconds=100)) == []
        assert [a.alert_id for a in r.published] == [alert.alert_id]


async def test_an_alert_published_by_a_replica_that_died_is_marked_sent_by_the_delivery_consumer(
    backend: Isolation | None,
) -> None:
    async with rig(backend, lease_seconds=30) as r:
        b = budget(thresholds=(50,))
        await r.spend("ws1", "60", NOW)
        r.crash_after_next_publish = True
        with pytest.raises(SystemError):
            await r.evaluator.evaluate(b, NOW)
        [alert] = r.published
        assert await r.evaluator.mark_sent(alert, NOW)  # what the delivery consumer does on receipt
        assert await r.evaluator.evaluate(b, NOW + timedelta(seconds=31)) == []
        assert len(r.published) == 1


async def test_raising_the_budget_rearms_only_thresholds_above_spend_and_stale_replicas_claim_nothing(
    backend: Isolation | None,
) -> None:
    async with rig(backend) as r:
        old = budget()
        await r.spend("ws1", "95", NOW)
        await r.evaluator.evaluate(old, NOW)
        raised = old.model_copy(update={"amount_usd": Decimal(110), "revision": 2})
        # 75 % of 110 is 82.5 (below 95: stays fired); 90 % is 99 and 100 % is 110 (above: re-armed).
        assert await r.evaluator.rearm(raised, NOW) == 1  # only 90 % had fired and is re-armed
        await r.spend("ws1", "10", NOW)  # 105
        assert await r.evaluator.evaluate(old, NOW) == []  # a replica that still holds revision 1
        fired = await r.evaluator.evaluate(raised, NOW)
        assert [(a.threshold_pct, a.budget_revision) for a in fired] == [(90, 2)]
        assert [a.threshold_pct for a in r.published] == [75, 90, 90]


async def test_a_new_month_starts_clean(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        b = budget(thresholds=(50,))
        await r.spend("ws1", "60", NOW)
        await r.evaluator.evaluate(b, NOW)
        following = month_end(NOW) + timedelta(seconds=5)
        assert await r.evaluator.evaluate(b, following) == []
        await r.spend("ws1", "51", following)
        [alert] = await r.evaluator.evaluate(b, following)
        assert (alert.period, alert.spend_usd) == (following.strftime("%Y-%m"), "51.000000000")
        assert [a.period for a in r.published] == [NOW.strftime("%Y-%m"), following.strftime("%Y-%m")]


async def test_scoped_budgets_count_only_their_tag_value(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        chat = budget(thresholds=(100,), scope=BudgetScope(tag="feature", value="chat"))
        await r.spend("ws1", "90", NOW, BudgetScope(tag="feature", value="search"))
        await r.spend("ws1", "60", NOW, BudgetScope(tag="feature", value="chat"))
        assert await r.evaluator.evaluate(chat, NOW) == []
        await r.spend("ws1", "40", NOW, BudgetScope(tag="feature", value="chat"))
        [alert] = await r.evaluator.evaluate(chat, NOW)
        assert alert.spend_usd == "100.000000000"


async def test_forecast_fires_once_when_the_month_end_projection_exceeds_the_budget(backend: Isolation | None) -> None:
    async with rig(backend, forecast_min_days=3) as r:
        b = budget(thresholds=(100,), forecast=True)
        start = month_start(NOW)
        days = (month_end(NOW) - start).days
        early = start + timedelta(days=1)
        await r.spend("ws1", "10", early)
        assert await r.evaluator.evaluate(b, early) == []  # one day in: too early to project
        day_ten = start + timedelta(days=10)
        await r.spend("ws1", "30", day_ten)  # 40 in 10 days: 4 a day, 120 or more by the month's end
        [alert] = await r.evaluator.evaluate(b, day_ten)
        assert (alert.kind, alert.projected_usd) == ("forecast", f"{4 * days}.000000000")
        assert await r.evaluator.evaluate(b, day_ten + timedelta(days=1)) == []


async def test_spike_fires_once_a_day_when_today_exceeds_the_multiple_of_the_trailing_mean(
    backend: Isolation | None,
) -> None:
    async with rig(backend) as r:
        b = budget(amount="100000", thresholds=(100,), spike_multiple=Decimal(3))
        for back in range(1, 8):
            await r.spend("ws1", "10", NOW - timedelta(days=back))
        await r.spend("ws1", "30", NOW)
        assert await r.evaluator.evaluate(b, NOW) == []  # exactly 3x is not above 3x
        await r.spend("ws1", "1", NOW)
        [alert] = await r.evaluator.evaluate(b, NOW)
        assert (alert.kind, alert.period, alert.trailing_mean_usd) == ("spike", NOW.date().isoformat(), "10.000000000")
        await r.spend("ws1", "100", NOW)
        assert await r.evaluator.evaluate(b, NOW) == []
