"""The erasure owners' one serving helper, in memory: command in, report out on the reports topic, and a
failure that reaches the ack policy (so the command comes again) instead of a lost command."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from faststream import AckPolicy
from faststream.kafka import TestKafkaBroker

from spendstream.common.erasure import DeletionCommand, DeletionReport, ErasureScope, Owner
from spendstream.common.erasure_owner import erasure_group, serve_erasure
from spendstream.common.kafka import Publisher, Received, make_broker, subscribe
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import DELETION_COMMANDS, DELETION_REPORTS, topic_name

PREFIX = "t."
AT = datetime(2026, 1, 1, tzinfo=UTC)


class FakeOwner:
    owner: Owner = "rollup"

    def __init__(self, fail: bool = False) -> None:
        self.erased: list[str] = []
        self._fail = fail

    async def erase(self, command: DeletionCommand) -> DeletionReport:
        if self._fail:
            raise RuntimeError("store down")
        repeat = command.request_id in self.erased
        self.erased.append(command.request_id)
        return DeletionReport(
            request_id=command.request_id,
            owner=self.owner,
            scope=command.scope,
            status="done",
            counts=[],
            verifications=[],
            finished_at=AT if not repeat else AT.replace(year=2027),
        )


def _command(request_id: str) -> DeletionCommand:
    return DeletionCommand(request_id=request_id, scope=ErasureScope(workspace_id="ws1"), issued_at=AT)


def test_every_owner_has_its_own_group_named_by_one_rule() -> None:
    assert [erasure_group(o) for o in ("ingest", "rollup", "alerts")] == [
        "spendstream-ingest-erasure",
        "spendstream-rollup-erasure",
        "spendstream-alerts-erasure",
    ]


async def test_a_command_is_erased_and_its_report_published_keyed_by_request_id() -> None:
    broker = make_broker(BaseServiceSettings(), "test")
    owner = FakeOwner()
    serve_erasure(broker, owner, PREFIX)
    reports: list[Received[DeletionReport]] = []

    async def collect(report: Received[DeletionReport]) -> None:
        reports.append(report)

    subscribe(broker, DELETION_REPORTS, prefix=PREFIX, group="r", handler=collect, ack_policy=AckPolicy.ACK)
    async with TestKafkaBroker(broker) as test:
        commands = Publisher(test, DELETION_COMMANDS, PREFIX)
        await test.publish(b"not a command", topic_name(DELETION_COMMANDS, PREFIX), key=b"junk")
        await commands.publish(_command("req-1"), "req-1")
        await commands.publish(_command("req-1"), "req-1")  # a repeat reports again
    assert owner.erased == ["req-1", "req-1"]
    assert [(r.key, r.value.request_id, r.value.owner) for r in reports] == [(b"req-1", "req-1", "rollup")] * 2


async def test_a_failed_erasure_publishes_nothing_and_reaches_the_ack_policy() -> None:
    broker = make_broker(BaseServiceSettings(), "test")
    serve_erasure(broker, FakeOwner(fail=True), PREFIX)
    reports: list[Received[DeletionReport]] = []

    async def collect(report: Received[DeletionReport]) -> None:
        reports.append(report)

    subscribe(broker, DELETION_REPORTS, prefix=PREFIX, group="r", handler=collect, ack_policy=AckPolicy.ACK)
    async with TestKafkaBroker(broker) as test:
        # NACK_ON_ERROR turns this into a seek back: the command comes again rather than being committed.
        with pytest.raises(RuntimeError, match="store down"):
            await Publisher(test, DELETION_COMMANDS, PREFIX).publish(_command("req-1"), "req-1")
    assert reports == []
