"""`python -m bench.rollup_micro [--runs N] [--only seal,open,encode,insert]`: rollup's per-batch CPU, in-process.

Times the steps of the Kafka -> ClickHouse path on 500-event envelopes sealed like ingest seals them (the
events of bench/events.py): `seal` plus the wire JSON (ingest's side), reading a record as both consumers do
(envelope JSON, decryption, decoding: `read_record`), encoding a batch for the insert (`encode_batches`), and
`ClickHouseWriter.insert_new` of a fresh batch into a throwaway chDB directory, without and with the
completeness ledger's rows (rollup/ledger.py). Prints the median and p90 of
wall and process-CPU time per batch, and the wire size of one envelope (with what Kafka's lz4 makes of it).
Nothing else is started; no broker is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from dataclasses import replace
from datetime import UTC, datetime

import lz4.frame  # type: ignore[import-untyped]
import orjson

from bench.events import BodyTemplate
from bench.micro import row, time_sync
from spendstream.common.envelope import BatchEnvelope, open_plaintext, read_record, seal
from spendstream.common.events import EncodedBatch, sealed_events
from spendstream.common.prices import bundled
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.ledger import Ledger, read_rows
from spendstream.rollup.schema import migrate
from spendstream.rollup.writes import ClickHouseWriter, StoredBatch, encode_batches

WORKSPACE = "ws_" + "0" * 32


class OneKey:
    """The one data key of every workspace of a benchmark, where the KeyRing is expected (bench.rollup_consumer
    uses it too)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    async def data_key(self, workspace_id: str, version: int) -> bytes | None:
        return self._key


def _row(name: str, walls: list[float], cpus: list[float]) -> str:
    return f"{row(name, walls, cpus, width=24)}  min {min(cpus) * 1e3:7.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rollup_micro", description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--only", default="seal,open,encode,insert")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    runs: int = args.runs
    key, now = os.urandom(32), datetime.now(UTC)
    template = BodyTemplate()
    events = [sealed_events(orjson.loads(template.body(f"m{i}"))["events"]) for i in range(runs)]
    batches = [EncodedBatch.of(e) for e in events]

    def wire(i: int) -> bytes:
        return (
            seal(batches[i], workspace_id=WORKSPACE, batch_id=f"b{i}", key=key, key_version=1, ingested_at=now)
            .model_dump_json()
            .encode()
        )

    values = [wire(i) for i in range(runs)]
    keyring = OneKey(key)
    loop = asyncio.new_event_loop()

    def decrypt(value: bytes) -> bytes:
        return open_plaintext(BatchEnvelope.model_validate_json(value), key)

    def read(i: int) -> StoredBatch:
        envelope, events, events_json = loop.run_until_complete(read_record(values[i], keyring))  # type: ignore[arg-type]
        return StoredBatch(
            envelope.workspace_id, envelope.batch_id, envelope.ingested_at, events, envelope.traceparent, events_json
        )

    lines = [
        f"envelope: {len(values[0]):,} bytes on the wire, {len(lz4.frame.compress(values[0])):,} after "
        f"Kafka's lz4; {batches[0].count} events"
    ]
    if "seal" in only:
        lines.append(_row("seal + wire JSON", *time_sync(runs, wire)))
    if "open" in only:
        lines.append(_row("envelope + decrypt + lz4", *time_sync(runs, lambda i: decrypt(values[i]))))
        lines.append(_row("read_record (all of it)", *time_sync(runs, read)))
    stored = [read(i) for i in range(runs)]
    prices = bundled()
    if "encode" in only:
        lines.append(_row("encode_batches", *time_sync(runs, lambda i: encode_batches([stored[i]], prices))))
    if "insert" in only:
        with tempfile.TemporaryDirectory(prefix="bench-rollup-micro-") as directory:
            client = clickhouse_client(f"chdb://{directory}")
            migrate(client, "bench", 12)
            writer = ClickHouseWriter(client, "bench", prices)
            bodies = [writer.encode([b]) for b in stored]
            warm = [StoredBatch.of("ws_warm", "w", now, events[0])]
            writer.insert_new(warm, writer.encode(warm))
            lines.append(_row("insert_new", *time_sync(runs, lambda i: writer.insert_new([stored[i]], bodies[i]))))
            # The same fresh batches (another workspace) with the completeness ledger's rows written too.
            ledgered = [replace(b, workspace_id="ws_ledger") for b in stored]
            with_ledger = ClickHouseWriter(client, "bench", prices, Ledger(client, "bench"))
            ledger_bodies = [with_ledger.encode([b]) for b in ledgered]
            timed = time_sync(runs, lambda i: with_ledger.insert_new([ledgered[i]], ledger_bodies[i]))
            lines.append(_row("insert_new + ledger", *timed))
            lines.append(_row("ledger read_rows", *time_sync(runs, lambda i: read_rows([stored[i]], {}))))
    loop.close()
    print(f"per 500-event batch, {runs} runs")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
