"""Reserving against hard budgets, on the real Redis and on its in-memory stand-in: all covering budgets or none,
committed spend and open reservations both count, expiry and release free exactly what was held, and with
Redis unreachable each budget's policy decides, never silently."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from spendstream.alerts.keyspace import KeySpace
from spendstream.alerts.periods import to_nanos
from spendstream.alerts.reservations import Allowed, Denied, RedisReservationStore, Reservations, Unavailable
from spendstream.common.records import BudgetRecord, BudgetScope
from tests.alerts.helpers import Book, Rig, budget, event, record, rig
from tests.support import Isolation, free_port

NOW = datetime.now(UTC)
CHAT = BudgetScope(tag="feature", value="chat")


def usd(text: str) -> int:
    return to_nanos(Decimal(text))


def hard(amount: str, scope: BudgetScope | None = None, **overrides: Any) -> BudgetRecord:
    return budget("ws1", amount, hard=True, scope=scope, **overrides)


async def test_a_reservation_holds_on_every_covering_hard_budget_or_on_none(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        workspace, chat = hard("1"), hard("0.5", CHAT)
        r.book.budgets += [workspace, chat, budget("ws1", "0.01")]  # a soft budget never refuses
        first = await r.reservations.reserve("ws1", usd("0.4"), {"feature": "chat"}, 60, NOW)
        assert isinstance(first, Allowed) and first.enforcement == "reserved"
        assert first.budgets == [(workspace.budget_id, usd("0.6")), (chat.budget_id, usd("0.1"))]

        # Fits the workspace budget (0.6 left) but not the chat budget (0.1 left): nothing is held anywhere.
        refused = await r.reservations.reserve("ws1", usd("0.2"), {"feature": "chat"}, 60, NOW)
        assert refused == Denied(chat.budget_id, usd("0.1"))
        other = await r.reservations.reserve("ws1", usd("0.6"), {"feature": "search"}, 60, NOW)
        assert isinstance(other, Allowed) and other.budgets == [(workspace.budget_id, 0)]

        shown = await r.reservations.state(workspace, NOW)
        assert shown is not None and (shown.reserved_usd, shown.remaining_usd) == ("1.000000000", "0.000000000")
        chat_state = await r.reservations.state(chat, NOW)
        assert chat_state is not None and chat_state.reserved_usd == "0.400000000"


async def test_committed_spend_of_the_month_counts_against_the_cap(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        chat = hard("1", CHAT)
        r.book.budgets.append(chat)
        await r.spend("ws1", "0.7", NOW, CHAT)
        await r.spend("ws1", "5", NOW)  # another feature's spend is not this budget's
        assert await r.reservations.reserve("ws1", usd("0.4"), {"feature": "chat"}, 60, NOW) == Denied(
            chat.budget_id, usd("0.3")
        )
        allowed = await r.reservations.reserve("ws1", usd("0.3"), {"feature": "chat"}, 60, NOW)
        assert isinstance(allowed, Allowed) and allowed.budgets == [(chat.budget_id, 0)]
        state = await r.reservations.state(chat, NOW)
        assert state is not None
        assert (state.committed_usd, state.reserved_usd, state.remaining_usd) == (
            "0.700000000",
            "0.300000000",
            "0.000000000",
        )


async def test_an_expired_reservation_releases_exactly_its_amount(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        cap = hard("1")
        r.book.budgets.append(cap)
        short = await r.reservations.reserve("ws1", usd("0.6"), {}, 1, NOW)
        kept = await r.reservations.reserve("ws1", usd("0.3"), {}, 60, NOW)
        assert isinstance(short, Allowed) and isinstance(kept, Allowed)
        assert isinstance(await r.reservations.reserve("ws1", usd("0.6"), {}, 60, NOW), Denied)
        await asyncio.sleep(1.2)
        again = await r.reservations.reserve("ws1", usd("0.6"), {}, 60, NOW)
        assert isinstance(again, Allowed) and again.budgets == [(cap.budget_id, usd("0.1"))]
        # The expired one cannot be released a second time: it is already gone from the open set.
        assert await r.reservations.release("ws1", short.reservation_id) is False
        state = await r.reservations.state(cap, NOW)
        assert state is not None and state.reserved_usd == "0.900000000"


async def test_a_release_frees_the_amount_once_and_only_in_its_own_workspace(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        cap = hard("1")
        r.book.budgets.append(cap)
        held = await r.reservations.reserve("ws1", usd("0.8"), {}, 60, NOW)
        assert isinstance(held, Allowed)
        assert await r.reservations.release("ws2", held.reservation_id) is False
        assert await r.reservations.release("ws1", held.reservation_id) is True
        assert await r.reservations.release("ws1", held.reservation_id) is False
        assert await r.reservations.release("ws1", "rsv_" + "0" * 24) is False
        state = await r.reservations.state(cap, NOW)
        assert state is not None and state.reserved_usd == "0.000000000"
        assert isinstance(await r.reservations.reserve("ws1", usd("1"), {}, 60, NOW), Allowed)


async def test_a_call_no_hard_budget_covers_is_allowed_holding_nothing(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        r.book.budgets += [hard("1", CHAT), budget("ws1", "0.01")]
        answer = await r.reservations.reserve("ws1", usd("5"), {"feature": "search"}, 60, NOW)
        assert isinstance(answer, Allowed)
        assert (answer.enforcement, answer.budgets, answer.expires_at) == ("no_hard_budget", [], None)


async def test_with_redis_unreachable_a_deny_budget_refuses_and_allow_budgets_say_they_did_not_enforce() -> None:
    unreachable = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1.0)
    book = Book()
    reservations = Reservations(RedisReservationStore(unreachable), KeySpace("t:", bytes(32)), book)
    try:
        closed, open_ = hard("1"), hard("1", CHAT, on_redis_unavailable="allow")
        book.budgets += [closed, open_]
        assert await reservations.reserve("ws1", 1, {"feature": "chat"}, 60, NOW) == Unavailable(closed.budget_id)
        book.budgets.remove(closed)
        allowed = await reservations.reserve("ws1", 1, {"feature": "chat"}, 60, NOW)
        assert isinstance(allowed, Allowed)
        assert (allowed.enforcement, allowed.budgets) == ("allowed_without_redis", [(open_.budget_id, None)])
        assert await reservations.state(open_, NOW) is None
    finally:
        await unreachable.aclose()


async def test_a_settling_event_replaces_the_estimate_with_its_cost_once(backend: Isolation | None) -> None:
    async with rig(backend) as r:
        cap = hard("1")
        r.book.budgets.append(cap)
        held = await r.reservations.reserve("ws1", usd("0.5"), {}, 60, NOW)
        other = await r.reservations.reserve("ws1", usd("0.2"), {}, 60, NOW)
        assert isinstance(held, Allowed) and isinstance(other, Allowed)
        settling = record("ws1", event("0.3", NOW, reservation_id=held.reservation_id), offset=10)

        assert await r.counter.count([settling], {}) == 1
        assert await state_of(r, cap) == ("0.300000000", "0.200000000")
        # Redelivered, or replayed by another consumer group: the offset is counted, nothing moves.
        assert await r.counter.count([settling], {}) == 0
        assert await state_of(r, cap) == ("0.300000000", "0.200000000")
        # The same event in a second record: its cost counts again (alerts counts per record), but the
        # reservation, already settled, frees nothing twice: the other one stays held.
        again = record("ws1", *settling.events, offset=11)
        assert await r.counter.count([again], {}) == 1
        assert await state_of(r, cap) == ("0.600000000", "0.200000000")
        assert await r.reservations.release("ws1", held.reservation_id) is False


async def test_an_event_with_an_unknown_or_expired_reservation_counts_its_cost_and_frees_nothing(
    backend: Isolation | None,
) -> None:
    async with rig(backend) as r:
        cap = hard("1")
        r.book.budgets.append(cap)
        short = await r.reservations.reserve("ws1", usd("0.4"), {}, 1, NOW)
        kept = await r.reservations.reserve("ws1", usd("0.4"), {}, 60, NOW)
        assert isinstance(short, Allowed) and isinstance(kept, Allowed)
        await asyncio.sleep(1.2)
        late = event("0.35", NOW, reservation_id=short.reservation_id)
        stranger = event("0.05", NOW, reservation_id="rsv_" + "f" * 24)
        assert await r.counter.count([record("ws1", late, stranger)], {}) == 1
        assert await state_of(r, cap) == ("0.400000000", "0.400000000")


async def state_of(r: Rig, budget_record: BudgetRecord) -> tuple[str, str]:
    state = await r.reservations.state(budget_record, NOW)
    assert state is not None
    return state.committed_usd, state.reserved_usd
