"""Crypto-shredding is true when the receipt says so: once an erasure is verified, no topic holds a readable
copy of the workspace's data key or its content in the clear, read from the earliest offset with the KEK."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from spendstream.common.envelope import UnreadableRecord, read_record
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import ALL_TOPICS, BUDGETS, DATA_KEYS, USAGE_EVENTS, topic_name
from spendstream.retention.shredding import leftovers
from spendstream.retention.windows import check_topics
from tests.retention.conftest import product, stored
from tests.retention.pipeline import publish, replay
from tests.support import TEST_COMPACTION_BOUND_SECONDS, Isolation, auth, create_workspace, usage_event

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
log = logging.getLogger(__name__)


async def test_after_a_verified_erasure_no_topic_holds_the_key_or_the_content_of_the_workspace(
    iso: Isolation,
) -> None:
    token = uuid.uuid4().hex[:12]
    # Tenant content, each unique enough to search every topic for.
    name, budget_name, customer = f"acme-{token}", f"budget-{token}", f"cust-{token}"
    webhook = f"https://8.8.8.8/hooks/{token}"
    gone, kept = await create_workspace(iso, name), await create_workspace(iso, "kept")
    a, b = gone["workspace_id"], kept["workspace_id"]
    async with product(iso) as p:
        budget = await p.client.post(
            "/v1/budgets",
            headers=auth(gone["admin"]),
            json={
                "name": budget_name,
                "amount_usd": "100000",
                "forecast": False,
                "spike_multiple": None,
                "scope": {"tag": "customer_id", "value": customer},
                "webhooks": [{"url": webhook, "secret": "test-signing-secret-0123456789"}],
                "emails": [],
            },
        )
        assert budget.status_code == 201, budget.text
        await p.stream(gone["ingest"], [usage_event(cost_usd=0.5, tags={"customer_id": customer}) for _ in range(4)])
        await p.stream(kept["ingest"], [usage_event(cost_usd=0.25) for _ in range(3)])
        await stored(iso, a, 4)
        await stored(iso, b, 3)
        # Before: the wrapped data key and the budget are there to be read.
        assert any(v is not None and a.encode() in v for _, v in await replay(iso, DATA_KEYS))

        started = time.monotonic()
        asked = await p.client.post("/v1/deletions", json={"request_id": "shred-1"}, headers=auth(gone["admin"]))
        assert asked.status_code == 202, asked.text
        done = await p.settled(a, "shred-1", timeout=TEST_COMPACTION_BOUND_SECONDS * 3 + 30)
        elapsed = time.monotonic() - started
        assert done.state == "verified", done.reason

    # The receipt states the bound and what retention itself verified.
    assert done.receipt is not None and done.receipt.compaction is not None
    check = done.receipt.compaction
    assert check.bound_seconds == TEST_COMPACTION_BOUND_SECONDS and check.records_left == 0
    assert topic_name(DATA_KEYS, iso.prefix) in check.topics
    assert done.owners_done_at is not None
    waited = (check.checked_at - done.owners_done_at).total_seconds()
    assert waited <= TEST_COMPACTION_BOUND_SECONDS
    log.warning("erasure verified %.1fs after the request; key records gone %.1fs after the owners", elapsed, waited)

    # Every topic from the earliest offset: no record holds the workspace's content in the clear ...
    secrets = [s.encode() for s in (name, budget_name, customer, webhook, token)]
    for topic in ALL_TOPICS:
        for key, value in await replay(iso, topic):
            for secret in secrets:
                assert secret not in (key or b"") and secret not in (value or b""), topic.name
    # ... no record of the data-key topic names it (only tombstones are left, whatever the record layout) ...
    assert not [
        v for k, v in await replay(iso, DATA_KEYS) if v is not None and (a.encode() in v or a.encode() in (k or b""))
    ]
    # ... and the KEK opens no envelope of it, while the other workspace's all open.
    keyring = KeyRing(iso.settings(BaseServiceSettings))
    await keyring.table.start()
    try:
        opened: dict[str, int] = {}
        for _, value in await replay(iso, USAGE_EVENTS):
            try:
                envelope, events, _ = await read_record(value, keyring)
            except UnreadableRecord as exc:
                assert exc.reason == "no_data_key" and exc.workspace_id == a
                opened[f"refused:{exc.workspace_id}"] = opened.get(f"refused:{exc.workspace_id}", 0) + 1
                continue
            opened[envelope.workspace_id] = opened.get(envelope.workspace_id, 0) + len(events)
        assert opened == {b: 3, f"refused:{a}": 1}
    finally:
        await keyring.table.stop()
    # The test topics carry the test's bound, and the drift check knows it.
    assert await check_topics(iso.settings(BaseServiceSettings)) == []


async def test_after_a_verified_customer_erasure_the_budget_topic_no_longer_holds_its_scope(iso: Isolation) -> None:
    token = uuid.uuid4().hex[:12]
    customer, other = f"cust-{token}", f"keep-{token}"
    ws = await create_workspace(iso)
    async with product(iso) as p:
        for name, value in ((f"gone-{token}", customer), (f"kept-{token}", other)):
            created = await p.client.post(
                "/v1/budgets",
                headers=auth(ws["admin"]),
                json={
                    "name": name,
                    "amount_usd": "100000",
                    "forecast": False,
                    "spike_multiple": None,
                    "scope": {"tag": "customer_id", "value": value},
                    "webhooks": [],
                    "emails": [],
                },
            )
            assert created.status_code == 201, created.text
        asked = await p.client.post("/v1/deletions", json={"customer_id": customer}, headers=auth(ws["admin"]))
        assert asked.status_code == 202, asked.text
        done = await p.settled(
            ws["workspace_id"], asked.json()["request_id"], timeout=TEST_COMPACTION_BOUND_SECONDS * 3 + 30
        )
        assert done.state == "verified", done.reason

    assert done.receipt is not None and done.receipt.compaction is not None
    assert done.receipt.compaction.topics == [topic_name(BUDGETS, iso.prefix)]
    assert done.receipt.compaction.records_left == 0
    values = [v or b"" for _, v in await replay(iso, BUDGETS)]
    assert not [v for v in values if customer.encode() in v or f"gone-{token}".encode() in v]
    assert [v for v in values if other.encode() in v]  # the other customer's budget stays


async def test_leftovers_count_every_readable_record_of_the_workspace_whatever_the_key_layout(iso: Isolation) -> None:
    ws, other = f"ws_{uuid.uuid4().hex}", f"ws_{uuid.uuid4().hex}"
    value = f'{{"workspace_id": "{ws}", "wrapped": "x"}}'.encode()
    # One record per key version (`<ws>/<n>`), each tombstoned; a third still live; another workspace's record.
    for key, record in (
        (f"{ws}/1", value),
        (f"{ws}/2", value),
        (f"{ws}/1", None),
        (f"{ws}/2", None),
        (f"{ws}/3", value),
        (other, f'{{"workspace_id": "{other}"}}'.encode()),
    ):
        await publish(iso, DATA_KEYS, key, record)
    found = await leftovers(iso.settings(BaseServiceSettings), ws, None)
    name = topic_name(DATA_KEYS, iso.prefix)
    assert found.records[name] == 3 and found.total == 3
    # Only the tombstoned keys are re-appended to roll the segment; a live value is never overwritten.
    assert found.nudges == {name: {f"{ws}/1".encode(): None, f"{ws}/2".encode(): None}}
    assert (await leftovers(iso.settings(BaseServiceSettings), f"ws_{uuid.uuid4().hex}", None)).total == 0
