"""Members as every service sees them: the replayed `people.members.v1` table (ids and roles, no e-mail)."""

from __future__ import annotations

from spendstream.common.kafka import CompactedTable
from spendstream.common.records import MemberRecord
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import MEMBERS


class MemberDirectory:
    """Every service's view of who is a member with which role; started and stopped with the service."""

    def __init__(self, settings: BaseServiceSettings) -> None:
        self.table: CompactedTable[MemberRecord] = CompactedTable(settings, MEMBERS)

    async def start(self) -> None:
        await self.table.start()

    async def stop(self) -> None:
        await self.table.stop()

    async def active(self, member_id: str, workspace_id: str) -> MemberRecord | None:
        """The member when active in that workspace, else None (unknown, invited, removed, another workspace)."""
        record = self.table.get(member_id)
        if record is None:
            # Created a moment ago by people: the table may be a poll behind.
            await self.table.catch_up()
            record = self.table.get(member_id)
        if record is None or record.status != "active" or record.workspace_id != workspace_id:
            return None
        return record

    def of_workspace(self, workspace_id: str) -> list[MemberRecord]:
        return [m for m in self.table.values() if m.workspace_id == workspace_id]
