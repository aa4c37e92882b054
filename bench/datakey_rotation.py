"""`python -m bench.datakey_rotation [ROTATIONS] [--bootstrap HOST:PORT]`: rotate one workspace's data key many
times (straight through the control plane, past the per-workspace limit), then print the size of the records on
the data-keys topic and how long a fresh key ring takes to replay it (a service's startup step). The figures
of docs/reliability.md come from here; the topics it creates are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from spendstream.common.kafka import make_broker, provision_topics
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import DATA_KEYS, topic_name
from spendstream.ingest.workspaces import ControlPlane


async def _sizes(bootstrap: str, topic: str) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        sizes: list[int] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                sizes += [len(r.value or b"") for r in records]
        return sizes
    finally:
        await consumer.stop()


async def measure(rotations: int, bootstrap: str) -> None:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = BaseServiceSettings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        kek=base64.b64encode(os.urandom(32)).decode(),
        data_dir=Path(tempfile.mkdtemp(prefix="spendstream-datakeys-")),
    )
    await provision_topics(settings)
    broker = make_broker(settings, "bench")
    await broker.connect()
    try:
        control = ControlPlane(settings, broker)
        workspace, _ = await control.create_workspace("bench")
        started = time.perf_counter()
        for version in range(2, rotations + 2):
            await control.put_data_key(workspace.workspace_id, version)
        print(f"rotations {rotations} in {time.perf_counter() - started:.1f} s")
        sizes = await _sizes(bootstrap, topic_name(DATA_KEYS, prefix))
        print(
            f"records {len(sizes)}: first {sizes[0]} B, last {sizes[-1]} B, "
            f"largest {max(sizes)} B, total {sum(sizes)} B"
        )
        for _ in range(3):
            ring = KeyRing(settings)
            started = time.perf_counter()
            await ring.table.start()
            print(
                f"key ring replay {time.perf_counter() - started:.2f} s, "
                f"current {ring.current_version(workspace.workspace_id)}"
            )
            await ring.table.stop()
    finally:
        await broker.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([t for t in await admin.list_topics() if t.startswith(prefix)])
        finally:
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.datakey_rotation", description=__doc__)
    parser.add_argument("rotations", type=int, nargs="?", default=1000)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()
    asyncio.run(measure(args.rotations, args.bootstrap))


if __name__ == "__main__":
    main()
