"""`python -m tests.chaos.chaos_rollup`: the real rollup process, whose ClickHouse fails while a file exists.

While CHAOS_CLICKHOUSE_OUTAGE names an existing file, the next write detaches `usage_events` in the real
engine, so inserts fail with ClickHouse's own "table doesn't exist" error (as with a server that lost a disk or
a table); once the file is gone, the table is attached again and the backlog drains. Nothing else is changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spendstream.rollup import __main__ as entry
from spendstream.rollup.writes import ClickHouseWriter, Inserted

OUTAGE = Path(os.environ["CHAOS_CLICKHOUSE_OUTAGE"])
_state = {"detached": False}


def outage(insert: Callable[..., Inserted]) -> Callable[..., Inserted]:
    """The write, failing while the outage file exists."""

    def write(self: ClickHouseWriter, *args: Any) -> Inserted:
        client = self._client
        if OUTAGE.exists() and not _state["detached"]:
            client.command(f"DETACH TABLE {self.db}.usage_events")
            _state["detached"] = True
        elif not OUTAGE.exists() and _state["detached"]:
            client.command(f"ATTACH TABLE {self.db}.usage_events")
            _state["detached"] = False
        return insert(self, *args)

    return write


ClickHouseWriter.insert_new = outage(ClickHouseWriter.insert_new)  # type: ignore[method-assign]
raise SystemExit(entry.main())
