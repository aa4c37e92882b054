"""`python -m tests.rollup.faulty_rollup`: the real rollup process with one fault from ROLLUP_TEST_FAULT.

kill_after_insert: SIGKILL itself as soon as a ClickHouse insert returned, i.e. after the write and before
                   FastStream commits the batch's offsets (the window exactly-once has to survive).
lose_view_part:    after a ClickHouse insert, cancel the whole daily rollup (the test sends one batch: as if the
                   process had died between the raw part and the view part) and SIGKILL itself before the commit.
slow_batch:        when a batch reaches the store, touch ROLLUP_TEST_MARKER and take 3 s before writing, so a
                   SIGTERM sent on seeing the marker lands in the middle of a batch.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spendstream.rollup import __main__ as entry
from spendstream.rollup.schema import DIMENSIONS, MEASURES
from spendstream.rollup.writes import ClickHouseWriter, Inserted

FAULT = os.environ["ROLLUP_TEST_FAULT"]


def faulty(insert: Callable[..., Inserted]) -> Callable[..., Inserted]:
    """The write with the fault around it."""

    def write(self: ClickHouseWriter, *args: Any) -> Inserted:
        if FAULT == "slow_batch":
            Path(os.environ["ROLLUP_TEST_MARKER"]).touch()
            time.sleep(3)
        new = insert(self, *args)
        if FAULT == "lose_view_part":
            keys = ("workspace_id", "day", *DIMENSIONS, "cost_source")
            self._client.command(
                f"INSERT INTO {self.db}.usage_daily ({', '.join((*keys, *MEASURES))}) SELECT {', '.join(keys)}, "
                f"{', '.join(f'-{m}' for m in MEASURES)} FROM {self.db}.usage_daily",
                settings={"insert_deduplicate": 0},
            )
        if FAULT in ("kill_after_insert", "lose_view_part"):
            os.kill(os.getpid(), signal.SIGKILL)
        return new

    return write


ClickHouseWriter.insert_new = faulty(ClickHouseWriter.insert_new)  # type: ignore[method-assign]
raise SystemExit(entry.main())
