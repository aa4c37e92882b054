"""A workspace's erasure reaches its connectors: on a deletion command for the whole workspace, every connector
record and cursor of the workspace is tombstoned on its compacted topic.

The sealed admin keys are crypto-shredded already with the workspace's data keys (sealing.py); the tombstones
remove the unreadable ciphertext too once the topics compact. A command for one end customer touches nothing
here: connectors hold no customer data. connectors is not (yet) an owner that reports to the saga.
"""

from __future__ import annotations

import logging

from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from spendstream.common.erasure import DeletionCommand
from spendstream.common.kafka import Received, subscribe
from spendstream.common.topics import DELETION_COMMANDS
from spendstream.connectors.registry import Registry

log = logging.getLogger(__name__)


def serve_workspace_erasure(broker: KafkaBroker, registry: Registry, prefix: str) -> None:
    async def on_command(record: Received[DeletionCommand]) -> None:
        scope = record.value.scope
        if scope.customer_id is not None:
            return
        await registry.configs.catch_up()
        removed = 0
        for connector in registry.of_workspace(scope.workspace_id):
            await registry.delete(connector)
            removed += 1
        log.info("workspace connectors removed", extra={"request_id": record.value.request_id, "removed": removed})

    subscribe(
        broker,
        DELETION_COMMANDS,
        prefix=prefix,
        group="spendstream-connectors-erasure",
        handler=on_command,
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
