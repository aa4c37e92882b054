"""`tags(...)`: the tags of a block reach every event tracked inside it, across threads run in a copied context
and across asyncio tasks; explicit tags win."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from spendstream_sdk import EventRefused, Meter, current_tags, tags
from tests.sdk.recorder import Recorder, recording


def sent_tags(server: Recorder) -> dict[str, dict[str, str]]:
    return {e["event_id"]: e.get("tags", {}) for r in server.requests for e in r.events}


def one(meter: Meter, **explicit: str) -> str:
    return meter.track(
        provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1, latency_ms=1, tags=explicit or None
    )


def test_nested_blocks_merge_inner_wins_and_explicit_tags_win_over_both(meters: list[Any]) -> None:
    with recording() as server:
        meter = Meter(url=server.url, api_key="k", flush_interval=0.05)
        meters.append(meter)
        outside = one(meter)
        with tags(feature="chat", environment="prod"):
            outer = one(meter)
            with tags(feature="search", customer_id="cust-1"):
                inner = one(meter)
                explicit = one(meter, feature="summary")
            after = one(meter)
        assert current_tags() == {}
        assert meter.flush(timeout=10)
    assert sent_tags(server) == {
        outside: {},
        outer: {"feature": "chat", "environment": "prod"},
        inner: {"feature": "search", "environment": "prod", "customer_id": "cust-1"},
        explicit: {"feature": "summary", "environment": "prod", "customer_id": "cust-1"},
        after: {"feature": "chat", "environment": "prod"},
    }


def test_threads_run_in_a_copied_context_carry_the_tags_and_plain_threads_do_not(meters: list[Any]) -> None:
    with recording() as server:
        meter = Meter(url=server.url, api_key="k", flush_interval=0.05)
        meters.append(meter)
        with tags(feature="batch"):
            with ThreadPoolExecutor(4) as pool:
                copied = [pool.submit(contextvars.copy_context().run, one, meter).result() for _ in range(8)]
            plain: list[str] = []
            thread = threading.Thread(target=lambda: plain.append(one(meter)))
            thread.start()
            thread.join()
        assert meter.flush(timeout=10)
    seen = sent_tags(server)
    assert all(seen[i] == {"feature": "batch"} for i in copied)
    assert seen[plain[0]] == {}  # a new thread starts with an empty context, as Python defines it


async def test_asyncio_tasks_carry_the_tags_of_the_block_they_were_created_in(meters: list[Any]) -> None:
    with recording() as server:
        meter = Meter(url=server.url, api_key="k", flush_interval=0.05)
        meters.append(meter)

        async def call(customer: str) -> str:
            with tags(customer_id=customer):
                await asyncio.sleep(0.01)  # interleave with the other tasks
                return one(meter)

        with tags(feature="chat"):
            tasks = [asyncio.create_task(call(f"cust-{i}")) for i in range(5)]
        ids = await asyncio.gather(*tasks)
        assert await asyncio.to_thread(meter.flush, 10)
    seen = sent_tags(server)
    assert [seen[i] for i in ids] == [{"feature": "chat", "customer_id": f"cust-{i}"} for i in range(5)]


def test_a_bad_tag_raises_when_the_block_is_entered() -> None:
    with pytest.raises(EventRefused) as refused, tags(customer="jane.roe@example.com"):
        pass
    assert (refused.value.field, refused.value.code) == ("tags.customer", "pii_value")
    assert "jane" not in str(refused.value)
    with pytest.raises(EventRefused) as bad_key, tags(Feature="x"):
        pass
    assert bad_key.value.code == "invalid_tag_key"
