"""Encoding queued events into request bodies: at most 500 events and 1 MiB of JSON each, gzipped."""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass

from spendstream_sdk.outbox import Item

MAX_EVENTS_PER_BATCH = 500
# ingest's limit is 1 MiB for the body and 5 MiB inflated; keeping the JSON itself within 1 MiB keeps both.
MAX_BODY_BYTES = 1024 * 1024
# Speed over ratio: usage events compress ~10x at any level, and the sender thread shares the app's CPU.
_GZIP_LEVEL = 1


@dataclass(frozen=True, slots=True)
class Batch:
    """The items of one request and its gzipped body."""

    items: list[Item]
    body: bytes


def _stamp(items: list[Item]) -> None:
    # The ISO text of a float timestamp (Unix seconds), made once per event in the sender (an explicit one is text
    # already): the date and time of day are formatted once per second, the microseconds appended.
    second, prefix = -1, ""
    for _, event in items:
        stamp = event["timestamp"]
        if type(stamp) is float:
            whole = int(stamp)
            if whole != second:
                second, prefix = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            event["timestamp"] = f"{prefix}.{int((stamp - whole) * 1_000_000):06d}Z"


def _json(items: list[Item]) -> bytes:
    return json.dumps({"events": [event for _, event in items]}, separators=(",", ":")).encode()


def encode(items: list[Item], max_bytes: int = MAX_BODY_BYTES) -> list[Batch]:
    """`items` (at most MAX_EVENTS_PER_BATCH) as one request body, or as several when their JSON passes
    `max_bytes` (halved until each fits; an event's JSON is a few KiB at most, far below the limit)."""
    _stamp(items)
    pending = [items]
    batches: list[Batch] = []
    while pending:
        part = pending.pop()
        raw = _json(part)
        if len(raw) > max_bytes and len(part) > 1:
            half = len(part) // 2
            pending += [part[half:], part[:half]]
            continue
        batches.append(Batch(part, gzip.compress(raw, compresslevel=_GZIP_LEVEL, mtime=0)))
    return batches
