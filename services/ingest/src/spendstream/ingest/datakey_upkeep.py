"""Removal of retired data-key versions once no retained envelope can use them (the rule: datakeys.py).

Run periodically by every ingest replica; it only writes tombstones, so replicas running it side by side (or
beside an erasure) at worst tombstone a record twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from spendstream.common import datakeys
from spendstream.common.tenants import KeyRing
from spendstream.ingest.workspaces import ControlPlane

log = logging.getLogger(__name__)


class DataKeyUpkeep:
    def __init__(
        self,
        control: ControlPlane,
        keyring: KeyRing,
        *,
        lifetime: timedelta | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._control = control
        self._keyring = keyring
        self._lifetime = lifetime if lifetime is not None else datakeys.retired_lifetime()
        self._clock = clock

    async def run(self) -> int:
        """Tombstone every record whose versions have all expired; returns how many records it tombstoned."""
        await self._keyring.table.catch_up()
        now = self._clock()
        removed: list[str] = []
        for workspace_id in self._keyring.workspaces():
            expired = set(datakeys.expired(self._keyring.versions(workspace_id), now, self._lifetime))
            if not expired:
                continue
            # A whole-set record goes only once every version it holds has expired.
            removed += [key for key, held in self._keyring.records(workspace_id).items() if expired.issuperset(held)]
        if removed:
            await self._control.tombstone_data_keys(removed)
            await self._keyring.table.catch_up()
            log.info("removed retired data-key versions", extra={"records": len(removed)})
        return len(removed)
