"""The layout of the data-keys topic and the life of a data-key version.

One record per version, keyed `<workspace_id>:v<version>`, of a constant size; a workspace whose versions were
written as one `WrappedKeySet` record keyed by its id is read as it is (never rewritten).

A version is retired when the next one is created: no envelope is sealed under it afterwards. Envelopes live
only on the topics of `ENVELOPE_TOPICS`, whose retention deletes whole segments, so the last envelope under a
retired version is gone at the latest `retention.ms + segment.ms` after the retirement (the longest over those
topics). A retired version is therefore tombstoned once it has been retired for that long plus
`RETIREMENT_MARGIN` (a replica still sealing under it until it sees the rotation, a publish in flight, clock
skew, the broker's retention check interval). The current version is never tombstoned, except by erasure.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import pairwise

from spendstream.common.crypto import DataKeyVersion
from spendstream.common.topics import ENVELOPE_TOPICS, AnyTopic

RETIREMENT_MARGIN = timedelta(hours=1)
_VERSION_MARK = ":v"


def record_key(workspace_id: str, version: int) -> str:
    return f"{workspace_id}{_VERSION_MARK}{version}"


def parse_record_key(key: str) -> tuple[str, int | None]:
    """(workspace id, version) of a record key; version None for a whole-set record (keyed by the workspace)."""
    workspace_id, mark, version = key.rpartition(_VERSION_MARK)
    if mark and version.isdigit():
        return workspace_id, int(version)
    return key, None


def retired_lifetime(topics: Iterable[AnyTopic] = ENVELOPE_TOPICS) -> timedelta:
    """How long a retired version must stay readable: the longest time an envelope sealed under it survives."""
    longest_ms = max(int(t.configs()["retention.ms"]) + int(t.configs()["segment.ms"]) for t in topics)
    return timedelta(milliseconds=longest_ms) + RETIREMENT_MARGIN


def expired(versions: Iterable[DataKeyVersion], now: datetime, lifetime: timedelta) -> list[int]:
    """The versions no retained envelope can use: retired (a newer version exists) longer than `lifetime` ago."""
    ordered = sorted(versions, key=lambda v: v.version)
    # The next version's creation is the retirement; a pruned next version only makes this later (safe side).
    return [older.version for older, newer in pairwise(ordered) if now - newer.created_at >= lifetime]
