"""Receipts name a customer only by a keyed hash, and keep no raw value an owner may have slipped in."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from spendstream.common.erasure import DeletionReport, ErasureScope, StoreCount, Verification
from spendstream.retention.receipts import owner_receipt, residue, subject_hash


def test_subject_hash_is_keyed_and_bound_to_the_workspace() -> None:
    kek, other = os.urandom(32), os.urandom(32)
    h = subject_hash(kek, "ws_1", "cust-1")
    assert h.startswith("hmac-sha256:") and "cust-1" not in h
    assert h == subject_hash(kek, "ws_1", "cust-1")
    assert h != subject_hash(other, "ws_1", "cust-1")  # without the key, guessing an id confirms nothing
    assert h != subject_hash(kek, "ws_2", "cust-1")  # the same id in two tenants does not link them


def _report(query: str, after: int = 0, result: int = 0) -> DeletionReport:
    return DeletionReport(
        request_id="r",
        owner="alerts",
        scope=ErasureScope(workspace_id="ws", customer_id="c-9"),
        status="done",
        counts=[StoreCount(store="redis:alerts", before=4, after=after)],
        verifications=[Verification(store="redis:alerts", query=query, result=result)],
        finished_at=datetime.now(UTC),
    )


def test_a_raw_customer_id_in_an_owners_query_is_replaced_by_its_hash() -> None:
    receipt = owner_receipt(_report("SCAN MATCH alerts:*{ws}*:c-9"), "c-9", "hmac-sha256:ab")
    assert receipt.verifications[0].query == "SCAN MATCH alerts:*{ws}*:hmac-sha256:ab"
    assert "c-9" not in receipt.model_dump_json()


def test_residue_names_every_store_with_something_left() -> None:
    assert residue(_report("q")) == []
    assert residue(_report("q", after=1)) == ["redis:alerts"]
    assert residue(_report("q", result=2)) == ["redis:alerts"]
