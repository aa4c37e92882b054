"""What the erasure tests share: talking to the saga's topics and reading every store of a tenant raw."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from spendstream.common import datakeys
from spendstream.common.erasure import DeletionCommand, DeletionReport, ErasureScope
from spendstream.common.kafka import make_broker
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import DATA_KEYS, DELETION_COMMANDS, DELETION_REPORTS, AnyTopic, topic_name
from spendstream.rollup.clickhouse import clickhouse_client
from tests.support import Isolation


async def publish(iso: Isolation, topic: AnyTopic, key: str, value: bytes | None) -> None:
    broker = make_broker(iso.settings(BaseServiceSettings), "tests")
    await broker.connect()
    try:
        await broker.publish(value, topic_name(topic, iso.prefix), key=key.encode())
    finally:
        await broker.stop()


async def send_command(iso: Isolation, request_id: str, workspace_id: str, customer_id: str | None = None) -> None:
    command = DeletionCommand(
        request_id=request_id,
        issued_at=datetime.now(UTC),
        scope=ErasureScope(workspace_id=workspace_id, customer_id=customer_id),
    )
    await publish(iso, DELETION_COMMANDS, request_id, command.model_dump_json().encode())


async def shred(iso: Isolation, workspace_id: str) -> None:
    """What ingest's owner does to the data key: a tombstone on the compacted data-keys topic for its only version."""
    await publish(iso, DATA_KEYS, datakeys.record_key(workspace_id, 1), None)


async def replay(iso: Isolation, topic: AnyTopic) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of a topic from offset 0, as (key, value)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=iso.stack.kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        name = topic_name(topic, iso.prefix)
        partitions = [TopicPartition(name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[tuple[bytes | None, bytes | None]] = []
        while True:
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if all(positions[tp] >= end for tp, end in ends.items()):
                return records
            batch = await consumer.getmany(timeout_ms=500)
            records += [(r.key, r.value) for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()


async def reports(
    iso: Isolation, request_id: str, owner: str, at_least: int = 1, timeout: float = 60
) -> list[DeletionReport]:
    """The reports one owner published for a request, in order (waits until there are `at_least`)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [DeletionReport.model_validate_json(v or b"") for _, v in await replay(iso, DELETION_REPORTS)]
        mine = [r for r in found if r.request_id == request_id and r.owner == owner]
        if len(mine) >= at_least:
            return mine
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no report for {request_id} within {timeout}s")
        await asyncio.sleep(0.2)


def raw_count(iso: Isolation, table: str, where: str, params: dict[str, Any]) -> int:
    """Rows physically present, masked or not (apply_deleted_mask = 0)."""
    client = clickhouse_client(iso.stack.clickhouse)
    result = client.query(
        f"SELECT count() FROM {iso.database}.{table} WHERE {where}",
        parameters=params,
        settings={"apply_deleted_mask": 0},
    )
    return int(result.result_rows[0][0])


def rows_of_table_with(iso: Isolation, column: str) -> list[str]:
    client = clickhouse_client(iso.stack.clickhouse)
    result = client.query(
        "SELECT table FROM system.columns WHERE database = {db:String} AND name = {c:String} "
        "AND table IN (SELECT name FROM system.tables WHERE database = {db:String} "
        "AND engine LIKE '%MergeTree')",
        parameters={"db": iso.database, "c": column},
    )
    return sorted(r[0] for r in result.result_rows)


def figures(iso: Isolation, workspace_id: str) -> dict[str, Any]:
    """A workspace's figures, raw and rolled up, to compare to the cent."""
    client = clickhouse_client(iso.stack.clickhouse)
    raw = client.query(
        f"SELECT customer_id, count(), sum(cost_usd), sum(input_tokens), sum(output_tokens) "
        f"FROM {iso.database}.usage_events FINAL WHERE workspace_id = {{ws:String}} GROUP BY customer_id "
        "ORDER BY customer_id",
        parameters={"ws": workspace_id},
    ).result_rows
    daily = client.query(
        f"SELECT day, customer_id, feature, sum(requests), sum(cost_usd), sum(input_tokens) "
        f"FROM {iso.database}.usage_daily WHERE workspace_id = {{ws:String}} GROUP BY day, customer_id, feature "
        "HAVING sum(requests) != 0 ORDER BY day, customer_id, feature",
        parameters={"ws": workspace_id},
    ).result_rows
    return {"raw": [tuple(_text(v) for v in r) for r in raw], "daily": [tuple(_text(v) for v in r) for r in daily]}


def _text(value: Any) -> str:
    # Decimals exactly, without trailing zeros: "0.01", "3".
    return format(value.normalize(), "f") if isinstance(value, Decimal) else str(value)
