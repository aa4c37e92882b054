"""The data-keys topic's record keys and the rule that says when a retired version can go."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from spendstream.common import crypto, datakeys
from spendstream.common.topics import USAGE_EVENTS

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _versions(*created_hours: float) -> list[crypto.DataKeyVersion]:
    kek = os.urandom(32)
    return [
        crypto.new_version("ws_a", i, kek, "kek-1").model_copy(update={"created_at": T0 + timedelta(hours=h)})
        for i, h in enumerate(created_hours, start=1)
    ]


def test_record_keys_name_the_workspace_and_the_version_and_a_bare_id_is_a_whole_set() -> None:
    assert datakeys.parse_record_key(datakeys.record_key("ws_0190abc", 12)) == ("ws_0190abc", 12)
    assert datakeys.parse_record_key("ws_0190abc") == ("ws_0190abc", None)
    assert datakeys.parse_record_key("ws_a:vx") == ("ws_a:vx", None)


def test_a_retired_version_outlives_the_longest_envelope_on_usage_events() -> None:
    # usage.events.v1 keeps 7 days, deleted by day-long segments: an envelope lives at most 8 days.
    assert datakeys.retired_lifetime() == timedelta(days=8) + datakeys.RETIREMENT_MARGIN
    assert datakeys.retired_lifetime() >= timedelta(milliseconds=USAGE_EVENTS.retention_ms or 0)


def test_a_version_expires_only_once_its_successor_is_older_than_the_lifetime() -> None:
    lifetime = timedelta(days=8)
    versions = _versions(0, 10, 20)  # v2 retired v1 at T0+10h, v3 retired v2 at T0+20h
    assert datakeys.expired(versions, T0 + timedelta(hours=10) + lifetime - timedelta(seconds=1), lifetime) == []
    assert datakeys.expired(versions, T0 + timedelta(hours=10) + lifetime, lifetime) == [1]
    # The current version never expires, however old.
    assert datakeys.expired(versions, T0 + timedelta(days=365), lifetime) == [1, 2]
    assert datakeys.expired(versions[2:], T0 + timedelta(days=365), lifetime) == []
