"""Serving the erasure saga as a data owner: one protocol, one consumer group rule, one subscription.

Each owner (ingest, rollup, alerts, connectors) implements `ErasureOwner.erase`: delete the scope's data idempotently,
verify, and return the report. `serve_erasure` wires it: a command from `retention.commands.v1` is erased,
its report published on `retention.reports.v1` (keyed by request id), and only then is the command's offset
committed (NACK_ON_ERROR). A crash anywhere before the commit brings the command again, which `erase` treats
as a repeat: it deletes nothing more and reports again.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from spendstream.common.erasure import DeletionCommand, DeletionReport, Owner
from spendstream.common.kafka import Publisher, Received, subscribe
from spendstream.common.topics import DELETION_COMMANDS, DELETION_REPORTS

log = logging.getLogger(__name__)


class ErasureOwner(Protocol):
    @property
    def owner(self) -> Owner: ...

    async def erase(self, command: DeletionCommand) -> DeletionReport:
        """Delete (if anything is left) and verify; a repeated command finds zero before and reports again."""
        ...


def erasure_group(owner: Owner) -> str:
    """The consumer group of an owner's erasure subscription (the installation's topic prefix goes before it).

    One group per owner: every owner receives every command."""
    return f"spendstream-{owner}-erasure"


def serve_erasure(broker: KafkaBroker, owner: ErasureOwner, prefix: str, **options: Any) -> None:
    """Subscribe `owner` to deletion commands; each report is published before the command is committed."""
    reports = Publisher(broker, DELETION_REPORTS, prefix)

    async def on_command(record: Received[DeletionCommand]) -> None:
        command = record.value
        report = await owner.erase(command)
        await reports.publish(report, command.request_id)
        log.info(
            "deletion command carried out",
            extra={"request_id": command.request_id, "owner": report.owner, "status": report.status},
        )

    subscribe(
        broker,
        DELETION_COMMANDS,
        prefix=prefix,
        group=erasure_group(owner.owner),
        handler=on_command,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        **options,
    )
