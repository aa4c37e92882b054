"""The Stripe webhook: events signed as Stripe signs them (`t=<unix>,v1=HMAC-SHA256(secret, "<t>.<body>")`) become
revenue records once; a replay, a bad signature and a stale timestamp store nothing; nothing personal in a
payload (a secret e-mail, a name, an address, a card) reaches a log line, a topic record or a table row."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from spendstream.common import crypto, datakeys
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import DATA_KEYS
from spendstream.rollup.app import create_service
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.revenue import month_end
from spendstream.rollup.settings import RollupSettings
from tests.ingest.topics import read_all, topic_names
from tests.retention.pipeline import publish, reports, send_command
from tests.support import Isolation, Stack, auth, create_workspace, eventually, new_isolation, provision, serving

pytestmark = pytest.mark.integration

SECRET = "whsec_test_0123456789abcdefABCDEF"
CANARY = "leak-canary-7f3e9@secret.example"
MONTH = (datetime.now(UTC).date().replace(day=1) - timedelta(days=1)).replace(day=1)
NEXT = month_end(MONTH) + timedelta(days=1)


def _ts(day: Any) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def signed(body: dict[str, Any], secret: str = SECRET, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(body).encode()
    t = at if at is not None else int(time.time())
    signature = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, {"Stripe-Signature": f"t={t},v1={signature}", "Content-Type": "application/json"}


def _personal() -> dict[str, Any]:
    """What Stripe objects carry about a person: none of it may be kept."""
    return {
        "customer_email": CANARY,
        "customer_name": f"Name {CANARY}",
        "customer_address": {"line1": f"1 {CANARY} street", "city": "Paris"},
        "billing_details": {"email": CANARY, "name": CANARY, "phone": "+33 1 23 45 67 89"},
        "payment_method_details": {"card": {"last4": "4242", "brand": "visa", "fingerprint": CANARY}},
    }


def invoice_paid(event_id: str, invoice_id: str, amount: int, customer: str | None = "cust-s") -> dict[str, Any]:
    metadata = {"spendstream_customer_id": customer} if customer else {"other": "x"}
    return {
        "id": event_id,
        "object": "event",
        "type": "invoice.paid",
        "created": _ts(MONTH) + 3600,
        "data": {
            "object": {
                "id": invoice_id,
                "object": "invoice",
                "amount_paid": amount,
                "currency": "usd",
                "customer": "cus_123",
                "metadata": metadata,
                "lines": {"data": [{"period": {"start": _ts(MONTH), "end": _ts(NEXT)}, "description": CANARY}]},
                **_personal(),
            }
        },
    }


@dataclass
class World:
    iso: Isolation
    client: httpx.AsyncClient
    ws: dict[str, str]

    @property
    def url(self) -> str:
        return f"/v1/stripe/webhook/{self.ws['workspace_id']}"

    async def records(self) -> list[dict[str, Any]]:
        r = await self.client.get(
            "/v1/revenue", params={"from": f"{MONTH:%Y-%m}", "to": f"{MONTH:%Y-%m}"}, headers=auth(self.ws["read"])
        )
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["records"]
        return found


@pytest.fixture(scope="module")
async def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    iso = new_isolation(stack, tmp_path_factory.mktemp("stripe"))
    await provision(iso)
    ws = await create_workspace(iso, "stripe")
    async with serving([create_service(iso.settings(RollupSettings))]) as client:
        r = await client.put(
            "/v1/stripe/endpoint",
            json={"signing_secret": SECRET, "customer_metadata_key": "spendstream_customer_id"},
            headers=auth(ws["admin"]),
        )
        assert r.status_code == 200, r.text
        assert SECRET not in r.text and r.json()["webhook_path"] == f"/v1/stripe/webhook/{ws['workspace_id']}"
        yield World(iso, client, ws)


async def test_setting_the_endpoint_needs_the_admin_key_and_stores_the_secret_sealed(world: World) -> None:
    body = {"signing_secret": SECRET}
    assert (await world.client.put("/v1/stripe/endpoint", json=body, headers=auth(world.ws["read"]))).status_code == 403
    client = clickhouse_client(world.iso.stack.clickhouse)
    rows = client.query(f"SELECT sealed_secret FROM {world.iso.database}.stripe_endpoints").result_rows
    assert rows and all(SECRET not in str(r[0]) and "0123456789abcdef" not in str(r[0]) for r in rows)


async def test_an_invoice_paid_becomes_one_record_and_a_replay_counts_once(world: World) -> None:
    payload, headers = signed(invoice_paid("evt_inv_1", "in_1", 4900))
    first = await world.client.post(world.url, content=payload, headers=headers)
    assert first.json() == {"status": "recorded", "source": "stripe", "source_id": "in_1", "reason": None}
    # The same event again, freshly signed (Stripe retries): counted once.
    payload, headers = signed(invoice_paid("evt_inv_1", "in_1", 4900))
    again = await world.client.post(world.url, content=payload, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    (record,) = [r for r in await world.records() if r["source_id"] == "in_1"]
    assert (record["customer_id"], record["amount"], record["currency"]) == ("cust-s", "49.000000000", "USD")
    # Stripe's period end is exclusive: the record pays for the month's first to its last day.
    assert (record["period_start"], record["period_end"]) == (MONTH.isoformat(), month_end(MONTH).isoformat())


async def test_refunds_and_credit_notes_are_negative_records_on_the_invoice_they_name(world: World) -> None:
    refund = {
        "id": "evt_ref_1",
        "type": "charge.refunded",
        "created": int(time.time()),
        "data": {"object": {"id": "ch_1", "amount_refunded": 900, "currency": "usd", "invoice": "in_1", **_personal()}},
    }
    credit = {
        "id": "evt_cn_1",
        "type": "credit_note.created",
        "created": _ts(MONTH) + 7200,
        "data": {
            "object": {
                "id": "cn_1",
                "total": 500,
                "currency": "jpy",  # zero-decimal: 500 yen, not 5
                "invoice": None,
                "metadata": {"spendstream_customer_id": "cust-j"},
                **_personal(),
            }
        },
    }
    single_refund = {
        "id": "evt_re_1",
        "type": "refund.created",
        "created": _ts(MONTH) + 60,
        "data": {
            "object": {
                "id": "re_1",
                "amount": 300,
                "currency": "usd",
                "charge": "ch_2",
                "metadata": {"spendstream_customer_id": "cust-r"},
                **_personal(),
            }
        },
    }
    for body in (refund, credit, single_refund):
        payload, headers = signed(body)
        r = await world.client.post(world.url, content=payload, headers=headers)
        assert r.json()["status"] == "recorded", r.text
    by_id = {r["source_id"]: r for r in await world.records()}
    assert (by_id["ch_1:refunded"]["customer_id"], by_id["ch_1:refunded"]["amount"]) == ("cust-s", "-9.000000000")
    assert by_id["ch_1:refunded"]["period_start"] == MONTH.isoformat()  # the invoice's period
    assert (by_id["re_1"]["customer_id"], by_id["re_1"]["amount"]) == ("cust-r", "-3.000000000")
    assert by_id["re_1"]["period_start"] == MONTH.isoformat()  # no stored invoice named: the event's month
    assert (by_id["cn_1"]["customer_id"], by_id["cn_1"]["amount"], by_id["cn_1"]["currency"]) == (
        "cust-j",
        "-500.000000000",
        "JPY",
    )


async def test_a_bad_signature_a_stale_timestamp_or_no_signature_store_nothing(world: World) -> None:
    before = await world.records()
    cases = [
        signed(invoice_paid("evt_bad_1", "in_bad", 100), secret="whsec_not_the_right_one_xxxxxxxx"),
        signed(invoice_paid("evt_bad_2", "in_bad", 100), at=int(time.time()) - 3600),
    ]
    payload, headers = signed(invoice_paid("evt_bad_3", "in_bad", 100))
    cases.append((payload, {"Content-Type": "application/json"}))
    tampered, headers = signed(invoice_paid("evt_bad_4", "in_bad", 100))
    cases.append((tampered.replace(b"100", b"999"), headers))
    for payload, headers in cases:
        r = await world.client.post(world.url, content=payload, headers=headers)
        assert r.status_code == 401 and r.json()["error"] == "invalid_signature", r.text
        assert CANARY not in r.text
    assert await world.records() == before
    client = clickhouse_client(world.iso.stack.clickhouse)
    seen = client.query(
        f"SELECT count() FROM {world.iso.database}.stripe_events WHERE event_id LIKE 'evt_bad_%'"
    ).result_rows
    assert seen[0][0] == 0
    # A workspace without an endpoint: nothing to verify with.
    payload, headers = signed(invoice_paid("evt_x", "in_x", 100))
    assert (await world.client.post("/v1/stripe/webhook/ws_none", content=payload, headers=headers)).status_code == 401


async def test_an_event_whose_customer_maps_to_no_id_is_ignored(world: World) -> None:
    payload, headers = signed(invoice_paid("evt_unmapped", "in_unmapped", 100, customer=None))
    r = await world.client.post(world.url, content=payload, headers=headers)
    assert r.json()["status"] == "ignored" and r.json()["reason"] == "customer_not_mapped"
    assert "in_unmapped" not in {r["source_id"] for r in await world.records()}


async def test_the_secret_email_is_in_no_log_line_topic_record_or_table_row(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    payload, headers = signed(invoice_paid("evt_leak", "in_leak", 1200))
    assert (await world.client.post(world.url, content=payload, headers=headers)).json()["status"] == "recorded"
    bad, headers = signed(invoice_paid("evt_leak_bad", "in_leak_bad", 1200), secret="whsec_wrong_wrong_wrong_1")
    assert (await world.client.post(world.url, content=bad, headers=headers)).status_code == 401
    assert caplog.records, "the webhook logs what it did (by ids)"
    for record in caplog.records:
        assert CANARY not in record.getMessage() and CANARY not in str(record.__dict__)

    client = clickhouse_client(world.iso.stack.clickhouse)
    db = world.iso.database
    tables = [str(r[0]) for r in client.query(f"SELECT name FROM system.tables WHERE database = '{db}'").result_rows]
    assert {"revenue", "stripe_events", "stripe_endpoints"} <= set(tables)
    for table in tables:
        text = client.raw_query(f"SELECT * FROM {db}.{table} FORMAT TSV").decode(errors="replace")
        assert CANARY not in text and "4242" not in text, table

    topics = await topic_names(world.iso.stack.kafka, world.iso.prefix)
    read = 0
    for topic in topics:  # each up to its end: an empty poll is no proof that a topic has nothing more
        for message in await read_all(world.iso.stack.kafka, topic):
            read += 1
            assert CANARY.encode() not in (message.value or b"") + (message.key or b"")
    assert topics and read  # the workspace's records (keys, data keys) were read


async def test_after_a_data_key_rotation_the_secret_is_resealed_under_the_new_version_and_still_verifies(
    world: World,
) -> None:
    settings = world.iso.settings(BaseServiceSettings)
    ws = world.ws["workspace_id"]
    rotated = crypto.new_version(ws, 2, settings.kek_bytes(), settings.kek_identity())
    await publish(world.iso, DATA_KEYS, datakeys.record_key(ws, 2), rotated.model_dump_json().encode())
    client = clickhouse_client(world.iso.stack.clickhouse)

    def sealed_version() -> int:
        rows = client.query(
            f"SELECT key_version FROM {world.iso.database}.stripe_endpoints FINAL WHERE workspace_id = {{ws:String}}",
            parameters={"ws": ws},
        ).result_rows
        return int(rows[0][0])

    assert sealed_version() == 1

    async def resealed() -> bool:
        payload, headers = signed(invoice_paid(f"evt_rot_{time.time_ns()}", "in_rot", 700))
        r = await world.client.post(world.url, content=payload, headers=headers)
        assert r.status_code == 200, r.text
        return sealed_version() == 2

    await eventually(resealed, timeout=20, interval=0.3)
    payload, headers = signed(invoice_paid("evt_rot_after", "in_rot_after", 700))
    assert (await world.client.post(world.url, content=payload, headers=headers)).json()["status"] == "recorded"


async def test_after_a_customer_erasure_an_event_made_before_it_does_not_bring_the_customer_back(
    world: World,
) -> None:
    await send_command(world.iso, "req-stripe-erase", world.ws["workspace_id"], customer_id="cust-s")
    (report,) = await reports(world.iso, "req-stripe-erase", "rollup")
    assert report.status == "done"
    assert not [r for r in await world.records() if r["customer_id"] == "cust-s"]
    # Stripe retries an undelivered event for days: one made before the erasure is ignored ...
    before = invoice_paid("evt_retry_old", "in_retry_old", 4900)
    payload, headers = signed(before)
    r = await world.client.post(world.url, content=payload, headers=headers)
    assert r.json()["status"] == "ignored" and r.json()["reason"] == "customer_erased"
    # ... while a payment made after it is new data.
    after = invoice_paid("evt_new", "in_new", 1500) | {"created": int(time.time()) + 1}
    payload, headers = signed(after)
    assert (await world.client.post(world.url, content=payload, headers=headers)).json()["status"] == "recorded"
    assert [r["source_id"] for r in await world.records() if r["customer_id"] == "cust-s"] == ["in_new"]
