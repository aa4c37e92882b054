"""Expiry on a clock of our choosing: rows past their table's TTL are removed now, and physically.

ClickHouse applies a TTL only when it merges a part (by default at most every few hours, and never for a part
nobody merges), against the server's clock. The sweeper evaluates each table's own TTL expression against an
injected `now`: partitions wholly expired are dropped (instant), partly expired ones get a synchronous DELETE
mutation. The TTLs stay as the backstop. `run_once` is one round as periodic work, under the writer lock.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from spendstream.common.erasure import StoreCount

log = logging.getLogger(__name__)

_TTL = re.compile(r"\bTTL\s+(.+?)(?:\s+SETTINGS\s|$)", re.S)


class Sweeper:
    def __init__(
        self,
        client: Client,
        database: str,
        lock: asyncio.Lock | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self.db = database
        # The consumer's writes hold this lock too: a sweep never interleaves with a batch being stored.
        self._lock = lock or asyncio.Lock()
        self._now = now

    async def run_once(self) -> None:
        async with self._lock:
            counts = await asyncio.to_thread(self.sweep, self._now())
        log.info("retention sweep", extra={"expired_rows": sum(c.before for c in counts)})

    def ttl_expressions(self) -> dict[str, str]:
        rows = self._client.query(
            "SELECT name, engine_full FROM system.tables WHERE database = {db:String} AND engine LIKE '%MergeTree'",
            parameters={"db": self.db},
        ).result_rows
        found = {}
        for name, engine_full in rows:
            match = _TTL.search(engine_full)
            if match and name != "erasure_log":
                found[name] = match.group(1).strip()
        return found

    def sweep(self, now: datetime) -> list[StoreCount]:
        """Remove every row whose TTL has passed at `now`; returns expired rows per table, before and after."""
        counts = []
        params = {"now": now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")}
        for table, ttl in sorted(self.ttl_expressions().items()):
            expired = f"({ttl}) <= toDateTime({{now:String}}, 'UTC')"
            parts = self._client.query(
                f"SELECT _partition_id, countIf({expired}), count() FROM {self.db}.{table} GROUP BY _partition_id",
                parameters=params,
                settings={"apply_deleted_mask": 0},
            ).result_rows
            before = sum(int(p[1]) for p in parts)
            for partition, old, total in parts:
                if old and old == total:
                    self._client.command(
                        f"ALTER TABLE {self.db}.{table} DROP PARTITION ID {{p:String}}", parameters={"p": partition}
                    )
                elif old:
                    self._client.command(
                        f"ALTER TABLE {self.db}.{table} DELETE IN PARTITION ID {{p:String}} WHERE {expired}",
                        parameters={**params, "p": partition},
                        settings={"mutations_sync": 2},
                    )
            after = int(
                self._client.query(
                    f"SELECT countIf({expired}) FROM {self.db}.{table}",
                    parameters=params,
                    settings={"apply_deleted_mask": 0},
                ).result_rows[0][0]
            )
            counts.append(StoreCount(store=f"clickhouse:{table}", before=before, after=after))
        return counts
