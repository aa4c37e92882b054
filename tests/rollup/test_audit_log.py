"""The audit log's store (issue 23, item 4): each record stored once, chained per workspace with gapless sequence
numbers and an authenticated head; a changed, removed, reordered or rewritten stored record is found by
verification, which names the first bad one. The tests alter the rows directly in ClickHouse (chDB)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from spendstream.common import crypto
from spendstream.common.erasure import ErasureScope
from spendstream.common.records import AuditRecord
from spendstream.rollup.audit_chain import COLUMNS, GENESIS, head_mac, link
from spendstream.rollup.audit_log import AuditLog, add_months
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.erasure import ClickHouseEraser
from spendstream.rollup.schema import migrate
from spendstream.rollup.sweeper import Sweeper
from tests.support import Isolation

pytestmark = pytest.mark.integration

KEY = crypto.derived_key(b"k" * 32, "audit-chain")


def record(workspace_id: str = "ws1", **overrides: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "record_id": str(uuid.uuid4()),
        "at": datetime.now(UTC),
        "workspace_id": workspace_id,
        "service": "people",
        "actor_kind": "member",
        "actor_id": "mem_1",
        "action": "members.write",
        "target": "mem_2",
        "outcome": "allowed",
        "request_id": "req_1",
        "client_hash": "ab" * 16,
        "detail": {"role": "admin"},
    }
    return AuditRecord(**{**values, **overrides})


class Store:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = database
        self.clock = datetime.now(UTC)

    def log(self, key: bytes = KEY) -> AuditLog:
        return AuditLog(self.client, self.db, key, 12, now=lambda: self.clock)

    def seqs(self, workspace_id: str = "ws1") -> list[int]:
        rows = self.client.query(
            f"SELECT seq FROM {self.db}.audit_records WHERE workspace_id = {{ws:String}} ORDER BY seq",
            parameters={"ws": workspace_id},
        ).result_rows
        return [int(r[0]) for r in rows]

    def rows(self, workspace_id: str = "ws1") -> list[dict[str, Any]]:
        return list(
            self.client.query(
                f"SELECT {', '.join(COLUMNS)} FROM {self.db}.audit_records WHERE workspace_id = {{ws:String}} "
                "ORDER BY seq",
                parameters={"ws": workspace_id},
            ).named_results()
        )

    def alter(self, assignment: str, where: str) -> None:
        self.client.command(
            f"ALTER TABLE {self.db}.audit_records UPDATE {assignment} WHERE workspace_id = 'ws1' AND {where} "
            "SETTINGS mutations_sync = 2"
        )

    def delete(self, where: str) -> None:
        self.client.command(
            f"ALTER TABLE {self.db}.audit_records DELETE WHERE workspace_id = 'ws1' AND {where} "
            "SETTINGS mutations_sync = 2"
        )

    def replace_all(self, rows: list[dict[str, Any]], workspace_id: str = "ws1") -> None:
        self.client.command(
            f"ALTER TABLE {self.db}.audit_records DELETE WHERE workspace_id = {{ws:String}}",
            parameters={"ws": workspace_id},
            settings={"mutations_sync": 2},
        )
        self.client.insert(f"{self.db}.audit_records", [[r[c] for c in COLUMNS] for r in rows], column_names=COLUMNS)


@pytest.fixture
def store(iso: Isolation) -> Store:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12, 12)
    return Store(client, iso.database)


def verdict(store: Store) -> dict[str, Any]:
    return store.log().verify("ws1").jsonable()


def test_records_get_gapless_sequence_numbers_per_workspace_and_a_verifying_chain(store: Store) -> None:
    log = store.log()
    assert log.store([record("ws1"), record("ws2"), record("ws1")]) == 3
    assert log.store([record("ws1") for _ in range(3)]) == 3
    assert store.seqs("ws1") == [1, 2, 3, 4, 5] and store.seqs("ws2") == [1]
    rows = store.rows("ws1")
    assert rows[0]["prev_hash"] == GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(rows, rows[1:], strict=False))
    for name in ("ws1", "ws2"):
        result = log.verify(name).jsonable()
        assert result["ok"] and result["first_bad"] is None
    assert verdict(store)["records"] == 5 and verdict(store)["head_hash"] == rows[-1]["hash"]


def test_a_redelivered_batch_is_chained_once_and_new_records_follow_without_a_gap(store: Store) -> None:
    log = store.log()
    batch = [record() for _ in range(4)]
    assert log.store(batch) == 4
    # The process died after storing and before Kafka committed: the same batch comes again, with more behind it.
    later = [record(), record()]
    assert log.store([*batch, *later]) == 2
    assert log.store([batch[1], batch[1]]) == 0
    assert store.seqs() == [1, 2, 3, 4, 5, 6]
    assert [r["record_id"] for r in store.rows()] == [r.record_id for r in [*batch, *later]]
    assert verdict(store)["ok"]


def test_a_crash_between_storing_records_and_their_head_leaves_no_gap_and_no_double_chain(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = store.log()
    log.store([record(), record()])
    batch = [record(), record(), record()]

    def crash(self: AuditLog, heads: Any) -> None:
        raise ConnectionError("the process died here")

    with monkeypatch.context() as patched:
        patched.setattr(AuditLog, "insert_heads", crash)
        with pytest.raises(ConnectionError):
            log.store(batch)
    # The records are stored, their head is not (it still names seq 2): the chain verifies all the same.
    assert store.seqs() == [1, 2, 3, 4, 5]
    head = log.head("ws1")
    assert head is not None and head.seq == 2
    assert verdict(store)["ok"]
    # Kafka redelivers the uncommitted batch: nothing is chained again, and the next record moves the head on.
    assert log.store(batch) == 0
    assert log.store([*batch, record()]) == 1
    assert store.seqs() == [1, 2, 3, 4, 5, 6]
    head = log.head("ws1")
    assert head is not None and head.seq == 6
    assert verdict(store) | {"head_hash": None} == {
        "ok": True,
        "records": 6,
        "first_bad": None,
        "first_seq": 1,
        "last_seq": 6,
        "head_hash": None,
    }


@pytest.fixture
def five(store: Store) -> Store:
    store.log().store([record(actor_id=f"mem_{i}") for i in range(1, 6)])
    assert verdict(store)["ok"]
    return store


def test_a_changed_field_is_named_as_altered(five: Store) -> None:
    five.alter("outcome = 'denied'", "seq = 3")
    assert verdict(five)["first_bad"] == {"seq": 3, "reason": "altered"}


def test_a_changed_detail_or_time_is_named_as_altered(five: Store) -> None:
    five.alter("detail = map('role', 'owner')", "seq = 4")
    assert verdict(five)["first_bad"] == {"seq": 4, "reason": "altered"}


def test_a_changed_time_is_named_as_altered(five: Store) -> None:
    five.alter("at = at - INTERVAL 1 DAY", "seq = 2")
    assert verdict(five)["first_bad"] == {"seq": 2, "reason": "altered"}


def test_a_removed_record_is_named_as_missing(five: Store) -> None:
    five.delete("seq = 3")
    result = verdict(five)
    assert result["first_bad"] == {"seq": 3, "reason": "missing"} and not result["ok"] and result["records"] == 4


def test_removed_first_records_are_named_although_the_rest_links(five: Store) -> None:
    five.delete("seq <= 2")
    # Their retention has not passed: this is no trimmed chain.
    assert verdict(five)["first_bad"] == {"seq": 2, "reason": "missing"}


def test_a_removed_tail_is_named_by_the_authenticated_head(five: Store) -> None:
    five.delete("seq >= 4")
    assert verdict(five)["first_bad"] == {"seq": 4, "reason": "truncated"}


def test_swapped_records_are_named_as_out_of_order(five: Store) -> None:
    rows = five.rows()
    # seq is the sort key (no UPDATE): the rows are written again with records 2 and 3 exchanged.
    rows[1]["seq"], rows[2]["seq"] = 3, 2
    five.replace_all(rows)
    assert five.seqs() == [1, 2, 3, 4, 5]
    assert verdict(five)["first_bad"] == {"seq": 2, "reason": "out_of_order"}


def test_a_record_stored_twice_is_named_as_duplicate(five: Store) -> None:
    (third,) = [r for r in five.rows() if r["seq"] == 3]
    five.client.insert(
        f"{five.db}.audit_records",
        [[third[c] for c in COLUMNS]],
        column_names=COLUMNS,
    )
    assert verdict(five)["first_bad"] == {"seq": 3, "reason": "duplicate"}


def _rewritten(rows: list[dict[str, Any]], start: int, change: Callable[[dict[str, Any]], None], key: bytes) -> None:
    """Re-chain rows from seq `start` after `change`, as someone who can compute SHA-256 but not the KEK would."""
    previous = GENESIS if start == 1 else rows[start - 2]["hash"]
    for row in rows[start - 1 :]:
        change(row)
        row["prev_hash"] = previous
        row["hash"] = link(previous, row)
        row["mac"] = head_mac(key, row["workspace_id"], int(row["seq"]), row["hash"])
        previous = row["hash"]


def test_a_chain_rewritten_with_recomputed_hashes_fails_its_head_mac(five: Store) -> None:
    rows = five.rows()

    def deny(row: dict[str, Any]) -> None:
        if row["seq"] == 3:
            row["outcome"] = "denied"

    _rewritten(rows, 3, deny, key=b"guessed" * 5)
    five.replace_all(rows)
    assert verdict(five)["first_bad"] == {"seq": 3, "reason": "unauthenticated"}


def test_a_whole_chain_rewritten_without_the_kek_is_detected_from_its_first_record(five: Store) -> None:
    rows = five.rows()
    _rewritten(rows, 1, lambda row: row.update(actor_id="mem_x"), key=crypto.derived_key(b"x" * 32, "audit-chain"))
    five.replace_all(rows)
    assert verdict(five)["first_bad"] == {"seq": 1, "reason": "unauthenticated"}
    # Rewritten under the right key, the same chain verifies: the MAC is what the KEK protects.
    rows = five.rows()
    _rewritten(rows, 1, lambda row: None, key=KEY)
    five.replace_all(rows)
    assert verdict(five)["ok"]


def test_a_forged_head_is_detected(five: Store) -> None:
    head = five.log().head("ws1")
    assert head is not None
    five.client.insert(
        f"{five.db}.audit_heads",
        [("ws1", 9, "00" * 32, "ff" * 32, head.stored_at)],
        column_names=("workspace_id", "seq", "hash", "mac", "stored_at"),
    )
    assert verdict(five)["first_bad"] == {"seq": 9, "reason": "unauthenticated"}
    # Nor does the writer chain from it: the next record follows the last stored one.
    five.log().store([record()])
    assert five.seqs() == [1, 2, 3, 4, 5, 6]


def test_a_chain_trimmed_by_retention_verifies_from_its_first_kept_record(store: Store) -> None:
    start = store.clock
    store.log().store([record() for _ in range(3)])
    store.clock = add_months(start, 12) + timedelta(days=1)
    store.log().store([record() for _ in range(2)])
    # Retention's sweep (the TTL, applied now) drops the records stored more than 12 months ago.
    Sweeper(store.client, store.db).sweep(store.clock)
    assert store.seqs() == [4, 5]
    result = verdict(store)
    assert result["ok"] and result["first_seq"] == 4 and result["records"] == 2
    # Its first kept record's stored link to the trimmed one is the anchor: altered, it no longer verifies.
    store.alter(f"prev_hash = '{'1' * 64}'", "seq = 4")
    assert verdict(store)["first_bad"] == {"seq": 4, "reason": "altered"}


def test_a_whole_chain_expired_by_retention_verifies_empty_and_goes_on_from_its_head(store: Store) -> None:
    store.log().store([record() for _ in range(2)])
    store.delete("1")
    assert verdict(store)["first_bad"] == {"seq": 2, "reason": "truncated"}
    store.clock = add_months(store.clock, 12) + timedelta(seconds=1)
    assert verdict(store) == {
        "ok": True,
        "records": 0,
        "first_bad": None,
        "first_seq": None,
        "last_seq": None,
        "head_hash": None,
    }
    # The chain goes on from its authenticated head.
    store.log().store([record()])
    assert store.seqs() == [3]
    assert verdict(store) | {"head_hash": None} == {
        "ok": True,
        "records": 1,
        "first_bad": None,
        "first_seq": 3,
        "last_seq": 3,
        "head_hash": None,
    }


def test_retention_is_a_ttl_of_its_own_setting(store: Store) -> None:
    def engine() -> str:
        rows = store.client.query(
            "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = 'audit_records'",
            parameters={"db": store.db},
        ).result_rows
        return str(rows[0][0])

    assert "TTL toDateTime(stored_at) + toIntervalMonth(12)" in engine()
    migrate(store.client, store.db, 12, 24)
    assert "TTL toDateTime(stored_at) + toIntervalMonth(24)" in engine()


def test_a_workspace_erasure_deletes_its_audit_rows_and_head_and_counts_them(store: Store) -> None:
    log = store.log()
    log.store([record("ws1"), record("ws1"), record("ws2")])
    counts, _ = ClickHouseEraser(store.client, store.db).erase(ErasureScope(workspace_id="ws1"))
    found = {c.store: (c.before, c.after) for c in counts}
    assert found["clickhouse:audit_records"] == (2, 0) and found["clickhouse:audit_heads"] == (1, 0)
    assert store.seqs("ws1") == [] and log.verify("ws2").ok


def test_no_record_carries_a_secret_an_e_mail_or_a_client_address() -> None:
    # AuditRecord's fields are ids and codes: an e-mail or an address has no field to go into.
    assert set(AuditRecord.model_fields) == {
        "record_id",
        "at",
        "workspace_id",
        "service",
        "actor_kind",
        "actor_id",
        "action",
        "target",
        "outcome",
        "request_id",
        "client_hash",
        "detail",
    }
    with pytest.raises(ValueError):
        AuditRecord.model_validate({**record().model_dump(), "email": "a@example.com"})
