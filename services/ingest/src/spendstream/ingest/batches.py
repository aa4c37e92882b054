"""Accepting a batch: validate, drop repeats, encrypt, publish, and only then remember the ids.

Shared by the HTTP endpoint and the Kafka-native intake, so both answer exactly the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, Protocol

import uuid_utils
from opentelemetry.trace import SpanKind

from spendstream.common import tracing
from spendstream.common.envelope import seal
from spendstream.common.events import EncodedBatch, Rejection, SealedEvent, encode, validate_events
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import USAGE_EVENTS, topic_name
from spendstream.ingest import fastpath, metrics
from spendstream.ingest.dedupe import Deduplicator
from spendstream.ingest.fastpath import CheckedBatch
from spendstream.ingest.limits import Limiter

_TRACER = tracing.tracer("ingest")
_event_id = attrgetter("event_id")


class Publisher(Protocol):
    """What ingest needs of the broker: publish one record and wait for its acknowledgement (a KafkaBroker;
    a fake in the in-memory tests)."""

    async def publish(
        self, message: bytes, topic: str, *, key: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Any: ...


class PublishFailed(Exception):
    """Kafka did not acknowledge the batch: nothing was accepted and the client may retry safely."""


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [r.as_dict() for r in self.rejected],
        }


class BatchAcceptor:
    def __init__(
        self,
        *,
        broker: Publisher,
        keyring: KeyRing,
        dedupe: Deduplicator,
        limiter: Limiter,
        topic_prefix: str,
        max_age: timedelta,
        publish_timeout: float,
    ) -> None:
        self._broker = broker
        self._keyring = keyring
        self._dedupe = dedupe
        self._limiter = limiter
        self._topic = topic_name(USAGE_EVENTS, topic_prefix)
        self._max_age = max_age
        self._publish_timeout = publish_timeout

    def check_fast(self, body: bytes, name_absent: Callable[[int], str]) -> CheckedBatch | None:
        """The request's batch when the fast path finds every event of it valid (fastpath.py), else None."""
        return fastpath.check(body, datetime.now(UTC), self._max_age, name_absent)

    async def accept(
        self,
        workspace_id: str,
        raw_events: list[Any] | CheckedBatch,
        source: str,
        *,
        quota: int,
        rate_limited: bool = True,
        traceparent: str | None = None,
    ) -> BatchResult:
        """Validate and publish; returns once Kafka acknowledged the fresh events.

        `raw_events` are the decoded events of a request, or a request the fast path found all valid.
        Raises LimitExceeded (nothing accepted, nothing counted) or PublishFailed (same; safe to retry).
        """
        if isinstance(raw_events, CheckedBatch):
            if rate_limited:
                await self._limiter.take(workspace_id, len(raw_events.events))
            return await self._take(workspace_id, raw_events.events, [], source, quota, raw_events.now, traceparent)
        now = datetime.now(UTC)
        if rate_limited:
            # Every event of the request costs a token, valid or not: validation is the work being limited.
            await self._limiter.take(workspace_id, len(raw_events))
        validated = validate_events(raw_events, now, self._max_age)
        for rejection in validated.rejected:
            metrics.EVENTS_REFUSED.labels(rejection.code).inc()
        return await self._take(workspace_id, validated.accepted, validated.rejected, source, quota, now, traceparent)

    async def _take(
        self,
        workspace_id: str,
        accepted: list[SealedEvent],
        rejected: list[Rejection],
        source: str,
        quota: int,
        now: datetime,
        traceparent: str | None,
    ) -> BatchResult:
        """Drop repeats, reserve quota, publish the valid events, and only then mark their ids as seen."""
        result = BatchResult(rejected=rejected)
        fresh = _unique(accepted)
        result.duplicates = len(accepted) - len(fresh)
        ids: list[str] = list(map(_event_id, fresh))  # every accepted event has one (both paths name them)
        already = await self._dedupe.seen(workspace_id, ids)
        if already:
            fresh = [e for e in fresh if e.event_id not in already]
            ids = list(map(_event_id, fresh))
            result.duplicates += len(already)
        if fresh:
            reservation = await self._limiter.reserve(workspace_id, len(fresh), quota, now)
            try:
                await self._publish(workspace_id, EncodedBatch(encode(fresh), len(fresh)), now, traceparent)
            except PublishFailed:
                # Not accepted, so not counted: the client's retry must find its quota intact.
                await self._limiter.release(reservation)
                raise
            # Marked only now: a crash before this line lets a retry through, and rollup's dedupe absorbs it.
            await self._dedupe.mark(workspace_id, ids)
        result.accepted = len(fresh)
        metrics.EVENTS_ACCEPTED.labels(source).inc(result.accepted)
        metrics.EVENTS_DUPLICATE.inc(result.duplicates)
        return result

    async def _publish(self, workspace_id: str, batch: EncodedBatch, now: datetime, traceparent: str | None) -> None:
        key_set = self._keyring.key_set(workspace_id)
        key = await self._keyring.data_key(workspace_id, key_set.current) if key_set else None
        if key_set is None or key is None:
            raise PublishFailed("the workspace has no data key")
        parent = tracing.context_from_headers({"traceparent": traceparent}) if traceparent else None
        count = batch.count
        with _TRACER.start_as_current_span(
            "ingest.publish", context=parent, kind=SpanKind.PRODUCER, attributes={"spendstream.events": count}
        ):
            # The publish span's own context travels on: in the envelope and in the record's headers.
            sent_traceparent = tracing.current_traceparent() or traceparent
            envelope = seal(
                batch,
                workspace_id=workspace_id,
                batch_id=str(uuid_utils.uuid7()),
                key=key,
                key_version=key_set.current,
                ingested_at=now,
                traceparent=sent_traceparent,
            )
            started = time.perf_counter()
            try:
                # One record per batch, keyed by workspace: a workspace's batches stay ordered on one partition.
                await asyncio.wait_for(
                    self._broker.publish(
                        envelope.model_dump_json().encode(),
                        self._topic,
                        key=workspace_id.encode(),
                        headers={"traceparent": sent_traceparent} if sent_traceparent else None,
                    ),
                    timeout=self._publish_timeout,
                )
            except Exception as exc:  # any failure to get the broker's ack means "not accepted"
                raise PublishFailed(type(exc).__name__) from exc
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_EVENTS.observe(count)


def _unique(events: list[SealedEvent]) -> list[SealedEvent]:
    """The first occurrence of each event_id within one batch."""
    if len(set(map(_event_id, events))) == len(events):  # the usual case, without building a second list
        return events
    seen: set[str] = set()
    out: list[SealedEvent] = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            out.append(event)
    return out
