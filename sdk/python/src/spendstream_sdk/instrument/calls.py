"""One provider call's record: started when the call starts, finished exactly once, with the usage the provider
reported or with the reason it reported none.

A refusal of the event by the meter's privacy guard (e.g. a PII-looking tag) never reaches the application: the
provider's answer is returned, the event is dropped and counted, and the warning names only fields and the count.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

from spendstream_sdk.context import current_tags
from spendstream_sdk.events import MAX_LATENCY_MS

from .tracker import Tracker
from .usage import Usage

logger = logging.getLogger("spendstream_sdk.instrument")

# Why a call was recorded without usage (track_unmetered's reason).
NO_USAGE_REPORTED = "no_usage_reported"  # the answer ended without a usage object
STREAM_CLOSED_EARLY = "stream_closed_before_usage"  # the caller closed or dropped the stream before usage came
STREAM_ERROR = "stream_error_before_usage"  # the stream failed before usage came
RAW_RESPONSE = "raw_response_not_read"  # with_raw_response / with_streaming_response: the body is the caller's


@dataclass(frozen=True, slots=True)
class InstrumentStats:
    """What instrumented clients did with their calls, for one meter (see `instrument_stats`)."""

    recorded: int  # calls tracked with the usage the provider reported
    unmetered: int  # calls tracked with the reason they have no usage
    dropped: int  # events the meter's guard refused (e.g. a PII-looking tag): the call's answer still returned


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.recorded = 0
        self.unmetered = 0
        self.dropped = 0


_COUNTS: weakref.WeakKeyDictionary[object, _Counts] = weakref.WeakKeyDictionary()
_COUNTS_LOCK = threading.Lock()


def counts_for(meter: object) -> _Counts:
    with _COUNTS_LOCK:
        counts = _COUNTS.get(meter)
        if counts is None:
            counts = _COUNTS[meter] = _Counts()
        return counts


def instrument_stats(meter: object) -> InstrumentStats:
    """The calls every client instrumented with `meter` recorded, left unmetered, or dropped (a snapshot)."""
    counts = counts_for(meter)
    with counts.lock:
        return InstrumentStats(recorded=counts.recorded, unmetered=counts.unmetered, dropped=counts.dropped)


@dataclass(frozen=True, slots=True)
class Recorder:
    """What every call of one instrumented client shares: the meter, the provider's name and the tags."""

    tracker: Tracker
    provider: str
    tags: Mapping[str, str] | None
    counts: _Counts

    def start(self, requested_model: object) -> Call:
        model = requested_model if isinstance(requested_model, str) and requested_model else "unknown"
        # A stream may end outside the `tags(...)` block it was opened in: the call carries the block's tags from
        # its start (the client's own tags win, as track()'s own do).
        context = current_tags()
        tags = {**context, **self.tags} if context and self.tags else dict(context) if context else self.tags
        return Call(self, model, tags)


class Call:
    """One call in flight. `finish` and `finish_unmetered` record it once; later calls to either do nothing."""

    def __init__(self, recorder: Recorder, model: str, tags: Mapping[str, str] | None) -> None:
        self.recorder = recorder
        self.model = model
        self.tags = tags
        self.started = time.perf_counter()
        self._done = False
        self._lock = threading.Lock()

    def latency_ms(self) -> int:
        # A stream held open beyond the event's latency bound is still a billed call: its latency is capped, not
        # its event refused.
        return min(round((time.perf_counter() - self.started) * 1000), MAX_LATENCY_MS)

    def _claim(self) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done = True
            return True

    def finish(self, usage: Usage | None, model: str | None, service_tier: str | None, reason: str) -> None:
        """Record `usage` (the answer's model and tier when known), or, when there is none, the call and `reason`."""
        if not self._claim():
            return
        rec, latency = self.recorder, self.latency_ms()
        model = model or self.model
        try:
            if usage is None:
                rec.tracker.track_unmetered(
                    provider=rec.provider, model=model, latency_ms=latency, reason=reason, tags=self.tags
                )
            else:
                rec.tracker.track(
                    provider=rec.provider,
                    model=model,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    latency_ms=latency,
                    cached_input_tokens=usage.cached_input_tokens,
                    reasoning_tokens=usage.reasoning_tokens,
                    cache_creation_input_tokens=usage.cache_creation_input_tokens,
                    cache_creation_1h_input_tokens=usage.cache_creation_1h_input_tokens,
                    service_tier=service_tier,
                    tags=self.tags,
                )
        except ValueError as refusal:  # the meter's EventRefused: a programming error the host must not pay for
            self._dropped(refusal)
            return
        with rec.counts.lock:
            if usage is None:
                rec.counts.unmetered += 1
            else:
                rec.counts.recorded += 1

    def _dropped(self, refusal: ValueError) -> None:
        counts = self.recorder.counts
        with counts.lock:
            counts.dropped += 1
            dropped = counts.dropped
        # Only the field's path and the rule's code: the refused value (a tag, perhaps PII) is never logged.
        field, code = getattr(refusal, "field", "?"), getattr(refusal, "code", "?")
        if dropped & (dropped - 1) == 0:  # the 1st, 2nd, 4th, 8th, ... drop: a bad tag on every call stays quiet
            logger.warning(
                "spendstream: the meter refused an instrumented %s call's usage event (field %s, rule %s); "
                "the provider's answer was returned and the event dropped (%d dropped so far)",
                self.recorder.provider,
                field,
                code,
                dropped,
            )
