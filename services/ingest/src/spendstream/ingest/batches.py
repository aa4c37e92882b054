"""Accepting a batch: validate, drop repeats, encrypt, publish, and only then remember the ids.

Shared by the HTTP endpoint and the Kafka-native intake, so both answer exactly the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple, Protocol

import uuid_utils
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from opentelemetry.trace import SpanKind

from spendstream.common import tracing
from spendstream.common.envelope import seal
from spendstream.common.events import EncodedBatch, Rejection, SealedEvent, encode, validate_events
from spendstream.common.records import IngestTally
from spendstream.common.tenants import KeyRing, KeyUnavailable
from spendstream.common.topics import INGEST_TALLIES, USAGE_EVENTS, topic_name
from spendstream.ingest import fastpath, metrics
from spendstream.ingest.dedupe import Deduplicator
from spendstream.ingest.fastpath import CheckedBatch
from spendstream.ingest.limits import Limiter

_TRACER = tracing.tracer("ingest")
_event_id = attrgetter("event_id")

# The largest envelope ingest publishes. A batch the README allows can seal to far more (a 1 MiB body of
# incompressible tags, 5 MiB inflated from gzip): such a batch is split across envelopes of at most this size, so
# it fits Kafka's default limit, 1 MiB per record (`max.message.bytes`), with room for key, headers and framing.
# A usual batch seals to a few dozen KB and stays one envelope.
ENVELOPE_MAX_BYTES = 900 * 1024
# What the topic must hold per record beyond the envelope itself (key, traceparent header, record framing).
RECORD_OVERHEAD_BYTES = 8 * 1024
# The broker refuses these for what the record is, not for the state it is in: a retry is refused again.
_PERMANENT = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)


class Publisher(Protocol):
    """What ingest needs of the broker: publish one record and wait for its acknowledgement (a KafkaBroker;
    a fake in the in-memory tests)."""

    async def publish(
        self, message: bytes, topic: str, *, key: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Any: ...


class PublishFailed(Exception):
    """Kafka did not acknowledge the batch: it was not accepted and the client may retry safely.

    `acknowledged`: the events of a split batch's envelopes that Kafka did take (the others' were not); they are
    stored, so they are counted and remembered, and the retry finds them duplicates. `permanent` when the broker
    refused a record as too large for the topic: the same batch would be refused again, so retrying cannot
    succeed (only a topic whose limit was lowered below ENVELOPE_MAX_BYTES does so)."""

    def __init__(self, reason: str, *, permanent: bool = False, acknowledged: Sequence[SealedEvent] = ()) -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.acknowledged = acknowledged


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
        self._tallies = topic_name(INGEST_TALLIES, topic_prefix)
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
        Raises LimitExceeded (nothing accepted, nothing counted), PublishFailed (not accepted, safe to retry; only
        the events of a split batch's acknowledged envelopes are counted and remembered) or KeyUnavailable
        (nothing accepted; the KEK cannot unwrap the workspace's data key).
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
                await self._publish(workspace_id, fresh, now, traceparent)
            except KeyUnavailable:
                # Not accepted, so not counted: the client's retry must find its quota intact.
                await self._limiter.release(reservation)
                raise
            except PublishFailed as exc:
                # Not accepted, so not counted: the client's retry must find its quota intact. Events of a split
                # batch's acknowledged envelopes are on the log for good: counted and remembered once, so the
                # retry sends only the others (alerts count per record: a republished envelope would count twice).
                kept = list(map(_event_id, exc.acknowledged))
                await self._limiter.release(replace(reservation, events=reservation.events - len(kept)))
                if kept:
                    await self._dedupe.mark(workspace_id, kept)
                raise
            # Marked only now: a crash before this line lets a retry through, and rollup's dedupe absorbs it.
            await self._dedupe.mark(workspace_id, ids)
        result.accepted = len(fresh)
        metrics.EVENTS_ACCEPTED.labels(source).inc(result.accepted)
        metrics.EVENTS_DUPLICATE.inc(result.duplicates)
        return result

    async def _publish(
        self, workspace_id: str, events: list[SealedEvent], now: datetime, traceparent: str | None
    ) -> None:
        """Seal and publish the events; returns once Kafka acknowledged every envelope of them."""
        version = self._keyring.current_version(workspace_id)
        key = await self._keyring.data_key(workspace_id, version) if version is not None else None
        if version is None or key is None:
            raise PublishFailed("the workspace has no data key")
        parent = tracing.context_from_headers({"traceparent": traceparent}) if traceparent else None
        count = len(events)
        with _TRACER.start_as_current_span(
            "ingest.publish", context=parent, kind=SpanKind.PRODUCER, attributes={"spendstream.events": count}
        ):
            # The publish span's own context travels on: in the envelope and in the record's headers.
            sent_traceparent = tracing.current_traceparent() or traceparent

            def sealed(part: list[SealedEvent]) -> _Sealed:
                batch_id = str(uuid_utils.uuid7())
                envelope = seal(
                    EncodedBatch(encode(part), len(part)),
                    workspace_id=workspace_id,
                    batch_id=batch_id,
                    key=key,
                    key_version=version,
                    ingested_at=now,
                    traceparent=sent_traceparent,
                )
                return _Sealed(envelope.model_dump_json().encode(), batch_id)

            whole = sealed(events)
            headers = {"traceparent": sent_traceparent} if sent_traceparent else None
            # Keyed by workspace: a workspace's envelopes stay ordered on one partition.
            key_bytes = workspace_id.encode()
            started = time.perf_counter()
            if len(whole.record) <= ENVELOPE_MAX_BYTES:  # the usual batch: one envelope
                try:
                    await asyncio.wait_for(
                        self._broker.publish(whole.record, self._topic, key=key_bytes, headers=headers),
                        timeout=self._publish_timeout,
                    )
                    await self._tally(workspace_id, whole.batch_id, events, now)
                except Exception as exc:  # any failure to get the broker's ack means "not accepted"
                    raise PublishFailed(type(exc).__name__, permanent=isinstance(exc, _PERMANENT)) from exc
            else:
                await self._publish_parts(workspace_id, _parts(events, whole, sealed), key_bytes, headers, now)
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_EVENTS.observe(count)

    async def _tally(self, workspace_id: str, batch_id: str, events: list[SealedEvent], now: datetime) -> None:
        """Publish what one acknowledged envelope holds, per UTC day, for the completeness ledger.

        After the envelope's ack and before the answer: an envelope without its tally (this publish failed) was
        not accepted (the caller answers 503), and the retry's envelope brings its own tally; a tally is never
        published for an envelope the broker did not take. An event both in an untallied envelope and in a
        retried one is counted once on the ledger, which reads each event's carriers (rollup/ledger.py)."""
        days = Counter(e.timestamp.astimezone(UTC).date() for e in events)
        tally = IngestTally(workspace_id=workspace_id, batch_id=batch_id, days=dict(days), at=now)
        await asyncio.wait_for(
            self._broker.publish(tally.model_dump_json().encode(), self._tallies, key=workspace_id.encode()),
            timeout=self._publish_timeout,
        )

    async def _publish_parts(
        self,
        workspace_id: str,
        parts: list[tuple[_Sealed, list[SealedEvent]]],
        key: bytes,
        headers: dict[str, str] | None,
        now: datetime,
    ) -> None:
        async def one(sealed: _Sealed, part: list[SealedEvent]) -> None:
            await asyncio.wait_for(
                self._broker.publish(sealed.record, self._topic, key=key, headers=headers), self._publish_timeout
            )
            await self._tally(workspace_id, sealed.batch_id, part, now)

        # Side by side: the producer keeps them in order on the partition, and their acknowledgements overlap.
        outcomes = await asyncio.gather(*(one(s, part) for s, part in parts), return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            acknowledged = [
                e
                for (_, part), o in zip(parts, outcomes, strict=True)
                if not isinstance(o, BaseException)
                for e in part
            ]
            raise PublishFailed(
                type(failed[0]).__name__,
                permanent=any(isinstance(o, _PERMANENT) for o in failed),
                acknowledged=acknowledged,
            ) from failed[0]


class _Sealed(NamedTuple):
    record: bytes
    batch_id: str


def _parts(
    events: list[SealedEvent], whole: _Sealed, sealed: Callable[[list[SealedEvent]], _Sealed]
) -> list[tuple[_Sealed, list[SealedEvent]]]:
    """The events in consecutive parts, each sealed as an envelope of at most ENVELOPE_MAX_BYTES, with the
    events it holds; `whole` is all of them sealed as one. One event always fits: its fields are bounded."""
    if len(whole.record) <= ENVELOPE_MAX_BYTES or len(events) == 1:
        return [(whole, events)]
    count = -(-len(whole.record) // ENVELOPE_MAX_BYTES)
    size = -(-len(events) // count)
    parts: list[tuple[_Sealed, list[SealedEvent]]] = []
    for start in range(0, len(events), size):
        part = events[start : start + size]
        # Events differ in size, so an even share of them may still be too large: that share is split again.
        parts.extend(_parts(part, sealed(part), sealed))
    return parts


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
