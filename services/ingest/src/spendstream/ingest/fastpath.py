"""The fast path: a batch accepted straight from the request bytes when every event in it is valid.

It decides acceptance only. msgspec decodes the body into `events.RequestBatch` and checks types, bounds and
lengths in C; the rules no type states (`spendstream.common.events`' column checks, and the privacy guard on tag
keys and values) then run column by column over the whole batch. At the least doubt it answers None and the
caller runs `events.validate_events`, the same rules event by event, which explains every refusal with its index,
field path, reason code and message. A batch with one bad event so costs both passes; a clean one only this.

What is this module's own is how the rules are applied: over columns, and with memos of values already accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

import msgspec
from msgspec.structs import astuple
from uuid_utils import uuid7

from spendstream.common.events import (
    MODEL,
    PROVIDER,
    SERVICE_TIER,
    TAG_KEY,
    ZONE,
    InvalidCost,
    RequestBatch,
    SealedEvent,
    cost_text,
    event_ids_valid,
    hour_writes_within,
    input_parts_within,
    parts_within,
    reservation_ids_valid,
    stamp_shapes_valid,
    stamps_to_utc,
    window_refusal,
    zone_valid,
)
from spendstream.guard import all_clean, is_content_key, remember


@dataclass(frozen=True, slots=True)
class CheckedBatch:
    """Every event of a request, found valid at `now` (the time the acceptor must also stamp the batch with)."""

    events: list[SealedEvent]
    now: datetime


class _Refused(Exception):
    """Some rule is not met: validate_events will say which."""


_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(RequestBatch)

# Values already found acceptable: providers, models and service tiers (their patterns), zones, tag keys (the
# pattern, and not a content key). Clients repeat the same few, so a batch is usually checked with C-level set
# comparisons. Only accepted values are kept (they are stored anyway); bounded like the guard's memos
# (guard.remember). Tag values found clean are the guard's own memo (guard.all_clean), shared with validate_events.
_GOOD: dict[str, set[str]] = {"provider": set(), "model": set(), "service_tier": set(), "zone": set(), "tag_key": set()}
_MEMO_MAX = 16_384


def _learn(kind: str, candidates: set[str], ok: Callable[[str], object]) -> None:
    memo = _GOOD[kind]
    for value in candidates - memo:
        if not ok(value):
            raise _Refused
        remember(memo, value, _MEMO_MAX)


def _is_tag_key(key: str) -> bool:
    # The guard runs before the rules in validate_events; here the tag-key half of it runs with them.
    return TAG_KEY.match(key) is not None and not is_content_key(key)


def check(body: bytes, now: datetime, max_age: timedelta, name_absent: Callable[[int], str]) -> CheckedBatch | None:
    """The batch, when validate_events would accept every event of it unchanged; otherwise None.

    An event without an `event_id` key is named `name_absent(index)`, one with `"event_id": null` a UUIDv7, as
    the callers name them before validate_events (HTTP names both with a UUIDv7; the Kafka intake the first by
    coordinates).
    """
    try:
        wire = _DECODER.decode(body).events
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    # Column by column, each rule over the whole batch at once: C-level maps, set operations and str methods
    # instead of a Python loop per event.
    columns = list(zip(*map(astuple, wire), strict=True))
    ids, providers, models, inputs, outputs, cached, reasoning, latencies, costs, stamps, tags = columns[:11]
    writes, hour, tiers, reservations = columns[11:]
    try:
        named = [i for i in ids if type(i) is str]
        if named and not event_ids_valid(named):
            return None
        _learn("provider", set(providers), PROVIDER.match)
        _learn("model", set(models), MODEL.match)
        if not input_parts_within(cached, writes, inputs) or not parts_within(reasoning, outputs):
            return None
        if not hour_writes_within(hour, writes):
            return None
        _learn("service_tier", set(tiers) - {None}, SERVICE_TIER.match)
        if not reservation_ids_valid(reservations):
            return None
        if not stamp_shapes_valid(stamps):
            return None
        _learn("zone", set(map(ZONE, stamps)), zone_valid)
        instants = stamps_to_utc(stamps)
        if window_refusal(instants, now, max_age) is not None:
            return None
        cost_texts = list(map(cost_text, costs))
        _learn("tag_key", set().union(*tags), _is_tag_key)
        if not all_clean(set(chain.from_iterable(map(dict.values, tags)))):
            return None
    except (_Refused, InvalidCost, ValueError, OverflowError):  # ValueError: fromisoformat's calendar
        return None
    if len(named) != len(ids):
        ids = tuple(
            (str(uuid7()) if i is None else name_absent(index)) if type(i) is not str else i
            for index, i in enumerate(ids)
        )
    events = list(
        map(
            SealedEvent,
            ids,
            providers,
            models,
            inputs,
            outputs,
            cached,
            reasoning,
            latencies,
            cost_texts,
            instants,
            tags,
            writes,
            hour,
            tiers,
            reservations,
        )
    )
    return CheckedBatch(events, now)
