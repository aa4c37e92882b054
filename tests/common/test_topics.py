"""The topic registry: one declaration per topic, and the configuration the broker gets from it."""

from __future__ import annotations

from spendstream.common.topics import ALL_TOPICS, COMPACTION_BOUND_MS, DATA_KEYS, USAGE_EVENTS, topic_name


def test_topic_names_are_unique_and_versioned() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert all(name.rsplit(".", 1)[-1].startswith("v") for name in names)


def test_usage_events_use_broker_append_time_so_retention_counts_from_ingestion() -> None:
    assert USAGE_EVENTS.configs()["message.timestamp.type"] == "LogAppendTime"


def test_delete_topics_have_a_retention_and_compacted_topics_do_not() -> None:
    for topic in ALL_TOPICS:
        configs = topic.configs()
        if topic.cleanup == "delete":
            assert int(configs["retention.ms"]) > 0
        else:
            assert configs["cleanup.policy"] == "compact" and "retention.ms" not in configs


def test_a_prefix_isolates_topic_names() -> None:
    assert topic_name(USAGE_EVENTS, "t1.") == "t1.usage.events.v1"


def test_compacted_topics_drop_old_values_within_the_stated_bound() -> None:
    # The active segment is never cleaned: segment.ms and max.compaction.lag.ms together stay inside the bound,
    # leaving room for the cleaner's backoff.
    assert COMPACTION_BOUND_MS <= 3600 * 1000
    for topic in ALL_TOPICS:
        configs = topic.configs()
        if topic.cleanup == "compact":
            roll, lag = int(configs["segment.ms"]), int(configs["max.compaction.lag.ms"])
            assert max(roll, lag) <= COMPACTION_BOUND_MS // 3, topic.name
            assert float(configs["min.cleanable.dirty.ratio"]) <= 0.5


def test_a_shorter_bound_shortens_only_the_compacted_topics() -> None:
    assert DATA_KEYS.configs(6000)["segment.ms"] == "2000"
    assert DATA_KEYS.configs(6000)["max.compaction.lag.ms"] == "2000"
    assert USAGE_EVENTS.configs(6000) == USAGE_EVENTS.configs()
