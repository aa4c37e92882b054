"""The audit log's store and verification on chDB: records/s chained and stored, records/s verified.

`python -m bench.audit_log [--records N] [--workspaces W] [--batch B]`: N records over W workspaces, stored in
batches of B (as the consumer receives them), then one workspace's chain verified. Its own chDB directory.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime

from spendstream.common import crypto
from spendstream.common.records import AuditRecord
from spendstream.rollup.audit_log import AuditLog
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.schema import migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_log", description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--workspaces", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="spendstream-bench-audit-")
    client = clickhouse_client(f"chdb://{workdir}")
    try:
        migrate(client, "bench", 12)
        log = AuditLog(client, "bench", crypto.derived_key(b"k" * 32, "audit-chain"))
        records = [
            AuditRecord(
                record_id=str(uuid.uuid4()),
                at=datetime.now(UTC),
                workspace_id=f"ws{i % args.workspaces}",
                service="people",
                actor_kind="member",
                actor_id=f"mem_{i % 97}",
                action="members.write",
                target=f"mem_{i}",
                outcome="allowed",
                request_id=uuid.uuid4().hex,
                client_hash="ab" * 16,
                detail={"role": "admin"},
            )
            for i in range(args.records)
        ]
        started = time.perf_counter()
        for start in range(0, len(records), args.batch):
            log.store(records[start : start + args.batch])
        stored = time.perf_counter() - started
        started = time.perf_counter()
        verdict = log.verify("ws0")
        verified = time.perf_counter() - started
        assert verdict.ok, verdict.jsonable()
        print(f"stored   {args.records} records in batches of {args.batch}: {args.records / stored:,.0f} records/s")
        print(f"verified {verdict.records} records of one workspace: {verdict.records / verified:,.0f} records/s")
    finally:
        client.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
