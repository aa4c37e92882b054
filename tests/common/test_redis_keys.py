"""The shared Redis key layout: a workspace's keys are found by one pattern, and only its keys."""

from __future__ import annotations

from fnmatch import fnmatchcase

from spendstream.common.redis_keys import tenant_key, tenant_pattern


def test_a_tenant_key_matches_its_workspace_pattern_and_not_anothers() -> None:
    key = tenant_key("ss:", "ingest", "seen", "ws_a", "event-1")
    assert key == "ss:ingest:seen:{ws_a}:event-1"
    assert fnmatchcase(key, tenant_pattern("ss:", "ws_a"))
    assert not fnmatchcase(key, tenant_pattern("ss:", "ws_ab"))
    assert not fnmatchcase(key, tenant_pattern("other:", "ws_a"))
