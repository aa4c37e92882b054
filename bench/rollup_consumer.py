"""`python -m bench.rollup_consumer [--events N] [--batch B] [--chunk C] [--runs R]`: rollup's consumer, in-process.

Runs `BatchWriter.handle` (decoding, the existence check, the writes into ClickHouse in chunks) over
N events sealed like ingest seals them (500 per record, six workspaces), handed over in batches of B records,
into a fresh database per run: what `python -m bench --only rollup` measures, without the broker, the
fetches and FastStream. On this shared 2-core machine its figure moves far less from run to run than the Kafka
one does, so a change's effect shows in it (docs/benchmarks.md, rollup). Prints events/s and the process's CPU
seconds per 100,000 events for each run. No broker or Redis is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import orjson
from clickhouse_connect.driver.client import Client

from bench.events import BATCH, BodyTemplate
from bench.rollup_micro import OneKey
from spendstream.common.envelope import seal
from spendstream.common.events import EncodedBatch, sealed_events
from spendstream.common.prices import bundled
from spendstream.common.service import tune_gc
from spendstream.common.tenants import KeyRing
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.consumer import BatchWriter
from spendstream.rollup.reconcile import Reconciler
from spendstream.rollup.schema import migrate
from spendstream.rollup.settings import RollupSettings
from spendstream.rollup.writes import ClickHouseWriter


def _records(events: int, key: bytes) -> list[Any]:
    """Kafka records as the consumer gets them: sealed 500-event envelopes, keyed round-robin by workspace."""
    template, now = BodyTemplate(BATCH), datetime.now(UTC)
    records = []
    for i in range(events // BATCH):
        batch = EncodedBatch.of(sealed_events(orjson.loads(template.body(f"c{i}"))["events"]))
        envelope = seal(
            batch, workspace_id=f"ws_{i % 6:032d}", batch_id=f"b{i}", key=key, key_version=1, ingested_at=now
        )
        records.append(
            SimpleNamespace(value=envelope.model_dump_json().encode(), topic="bench", partition=i % 6, offset=i)
        )
    return records


async def _run(
    client: Client, database: str, records: list[Any], key: bytes, batch: int, chunk: int
) -> tuple[float, float]:
    """(events/s, CPU seconds per 100,000 events) of one pass over `records` into a fresh database."""
    migrate(client, database, 12)
    writer = BatchWriter(
        writer=ClickHouseWriter(client, database, bundled()),
        repairs=Reconciler(client, database),
        keyring=cast(KeyRing, OneKey(key)),
        broker=cast(Any, None),
        topic_prefix="bench.",
        retry_seconds=5.0,
        erased=None,
        chunk_records=chunk,
    )
    started, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(records), batch):
        await writer.handle(records[first : first + batch])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    stored = client.query(f"SELECT count() FROM {database}.usage_events").result_rows[0][0]
    client.command(f"DROP DATABASE {database} SYNC")
    events = len(records) * BATCH
    if stored != events:
        raise RuntimeError(f"stored {stored} of {events} events")
    return events / elapsed, cpu / (events / 100_000)


def main(argv: list[str] | None = None) -> int:
    defaults = RollupSettings.model_fields
    parser = argparse.ArgumentParser(prog="python -m bench.rollup_consumer", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=defaults["batch_max_records"].default, help="records")
    parser.add_argument("--chunk", type=int, default=defaults["write_chunk_records"].default, help="records")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    key = os.urandom(32)
    records = _records(args.events, key)
    tune_gc()  # as every served process does (service.serve)
    print(
        f"{len(records) * BATCH:,} events in records of {BATCH}, batches of {args.batch} records, chunks of "
        f"{args.chunk}"
    )
    # One chDB directory for the process (chDB opens one per process), a fresh database per run.
    with tempfile.TemporaryDirectory(prefix="bench-rollup-consumer-") as directory:
        client = clickhouse_client(f"chdb://{directory}")
        for run in range(args.runs):
            rate, cpu = asyncio.run(_run(client, f"bench{run}", records, key, args.batch, args.chunk))
            print(f"run {run + 1}: {rate:,.0f} events/s, {cpu:.3f} CPU-s per 100,000 events")
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
