"""Publishing audit records: every administrative action of every service, written before its effect.

`AuditTrail.record` waits for the broker's acknowledgement (acks=all); when it raises, the caller refuses the
action (fail closed), so no effect exists without its record. rollup chains and stores the records per
workspace (`rollup/audit_log.py`); this module only publishes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from datetime import UTC, datetime

from faststream.kafka import KafkaBroker

from spendstream.common import crypto
from spendstream.common.kafka import Publisher
from spendstream.common.records import AuditActorKind, AuditOutcome, AuditRecord
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import AUDIT_RECORDS


class AuditUnavailable(Exception):
    """The audit record could not be published: the action must be refused (503), nothing changed."""


class AuditTrail:
    """One service's audit publisher."""

    def __init__(
        self, settings: BaseServiceSettings, broker: KafkaBroker, service: str, timeout_seconds: float = 5.0
    ) -> None:
        self._publisher = Publisher(broker, AUDIT_RECORDS, settings.topic_prefix)
        self._service = service
        # A request waits for its record at most this long: a broker that cannot take it refuses the action
        # within the request's own patience rather than the producer's much longer metadata wait.
        self._timeout = timeout_seconds
        self._address_key = crypto.derived_key(settings.kek_bytes(), "client-address")

    def client_hash(self, address: str) -> str:
        """The client address as a keyed hash: equal addresses match, the address itself is not recoverable."""
        if not address:
            return ""
        return hmac.new(self._address_key, address.encode(), hashlib.sha256).hexdigest()[:32]

    async def record(
        self,
        *,
        workspace_id: str,
        actor_kind: AuditActorKind,
        actor_id: str,
        action: str,
        outcome: AuditOutcome,
        target: str = "",
        request_id: str = "",
        client_address: str = "",
        detail: dict[str, str] | None = None,
    ) -> AuditRecord:
        """Publish one record and wait for its acknowledgement; AuditUnavailable when it cannot be published."""
        record = AuditRecord(
            record_id=str(uuid.uuid4()),
            at=datetime.now(UTC),
            workspace_id=workspace_id,
            service=self._service,
            actor_kind=actor_kind,
            actor_id=actor_id,
            action=action,
            target=target,
            outcome=outcome,
            request_id=request_id,
            client_hash=self.client_hash(client_address),
            detail=detail or {},
        )
        try:
            async with asyncio.timeout(self._timeout):
                await self._publisher.publish(record, workspace_id)
        except Exception as exc:
            raise AuditUnavailable(f"the audit record of {action} could not be published") from exc
        return record
