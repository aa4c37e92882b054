"""What a meter did with the events it was given, as one frozen snapshot (`meter.stats`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MeterStats:
    """Counts since the meter started (in a forked child: since the fork).

    Every tracked event is in exactly one of `queued`, `sent`, `rejected` or a `dropped_*` count, so `tracked`
    is their sum.
    """

    tracked: int  # events track() and track_unmetered() took (an event they refuse raises and is not counted)
    queued: int  # tracked events not yet settled: waiting in the queue or in a batch being sent
    sent: int  # events the server answered as stored (accepted, or a duplicate of an event already stored)
    retried: int  # batch sends repeated after a 429, a 5xx or a connection error
    rejected: int  # events the server refused one by one (a 202/422 answer's `rejected`)
    dropped_queue_full: int  # never queued: the queue was full
    dropped_expired: int  # older than max_age before the server took them (the server kept failing)
    dropped_refused: int  # in a batch the server refused whole (a 4xx other than 429: bad key, too large, ...)
    dropped_at_close: int  # still unsent when close() or the exit hook ran out of time
    unmetered: int  # calls tracked by track_unmetered(): their usage was never reported

    @property
    def dropped(self) -> int:
        """Every dropped event, whatever the reason."""
        return self.dropped_queue_full + self.dropped_expired + self.dropped_refused + self.dropped_at_close
