"""The usage event v1 and its validation (spendstream.common.events): every field rule, and for any
input a list of content-free rejections or a valid event, never an exception."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spendstream.common.events import MAX_TAGS, SealedEvent, validate_event, validate_events
from tests.support import usage_event

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(days=372)


def _codes(raw: Any) -> list[tuple[str, str]]:
    result = validate_event(0, raw, NOW, MAX_AGE)
    assert isinstance(result, list), "expected a rejection"
    return [(r.field, r.code) for r in result]


def _at(**overrides: Any) -> dict[str, Any]:
    return usage_event(**{"timestamp": NOW.isoformat(), **overrides})


def test_valid_event_gets_a_server_assigned_event_id_when_absent() -> None:
    raw = _at()
    del raw["event_id"]
    event = validate_event(0, raw, NOW, MAX_AGE)
    assert isinstance(event, SealedEvent) and event.event_id and len(event.event_id) == 36


def test_timestamp_is_normalised_to_utc() -> None:
    event = validate_event(0, _at(timestamp="2026-11-23T13:00:00+01:00"), NOW, MAX_AGE)
    assert isinstance(event, SealedEvent) and event.timestamp == NOW


def test_each_field_rule_has_its_reason_code() -> None:
    assert _codes(_at(provider="OpenAI")) == [("provider", "invalid_format")]
    assert _codes(_at(model="a" * 129)) == [("model", "invalid_format")]
    assert _codes(_at(input_tokens=10**9 + 1)) == [("input_tokens", "out_of_range")]
    assert _codes(_at(output_tokens="12")) == [("output_tokens", "invalid_value")]
    assert _codes(_at(latency_ms=3_600_001)) == [("latency_ms", "out_of_range")]
    assert _codes(_at(cost_usd=-0.01)) == [("cost_usd", "out_of_range")]
    assert _codes(_at(event_id="has space")) == [("event_id", "invalid_format")]
    assert _codes(_at(output_tokens=5, reasoning_tokens=6)) == [("", "inconsistent_tokens")]
    assert _codes(_at(timestamp=(NOW - timedelta(days=400)).isoformat())) == [("timestamp", "timestamp_too_old")]
    assert _codes(_at(timestamp=(NOW + timedelta(minutes=6)).isoformat())) == [("timestamp", "timestamp_in_future")]
    assert _codes(_at(tags={f"t{i}": "v" for i in range(MAX_TAGS + 1)})) == [("tags", "too_many_tags")]
    assert _codes(_at(tags={"feature": 3})) == [("tags.feature", "invalid_value")]
    assert _codes({k: v for k, v in _at().items() if k != "model"}) == [("model", "missing_field")]
    assert _codes("not an object") == [("", "invalid_event")]
    assert _codes(_at(timestamp="0001-01-01T00:00:00+01:00")) == [("timestamp", "invalid_timestamp")]
    assert _codes(_at(timestamp="9999-12-31T23:59:59-01:00")) == [("timestamp", "invalid_timestamp")]


def test_boundaries_are_inclusive() -> None:
    ok = validate_event(
        0,
        _at(
            input_tokens=10**9,
            latency_ms=3_600_000,
            cost_usd=1_000_000,
            tags={f"t{i}": "v" * 120 for i in range(MAX_TAGS)},
            timestamp=(NOW + timedelta(minutes=5)).isoformat(),
        ),
        NOW,
        MAX_AGE,
    )
    assert isinstance(ok, SealedEvent)


def test_one_bad_event_never_spoils_the_others() -> None:
    batch = validate_events([_at(), _at(prompt="x"), _at()], NOW, MAX_AGE)
    assert len(batch.accepted) == 2 and [r.index for r in batch.rejected] == [1]


# Marked strings stand for client content: no rejection may repeat them (plain short strings could match a
# field name such as "output", so only marked ones are searched for).
MARKED = st.text(max_size=30).map(lambda t: f"\u039e{t}")
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40) | MARKED
FIELDS = st.sampled_from([*SealedEvent.__struct_fields__, "extra"])


@settings(max_examples=300)
@given(st.dictionaries(FIELDS, SCALARS | st.dictionaries(st.text(max_size=10), SCALARS, max_size=3), max_size=8))
def test_any_input_yields_an_event_or_content_free_rejections(mutation: dict[str, Any]) -> None:
    raw = {**_at(), **mutation}
    result = validate_event(0, raw, NOW, MAX_AGE)
    if isinstance(result, SealedEvent):
        return
    assert result
    rendered = " ".join(f"{r.field} {r.code} {r.message}" for r in result)
    for value in mutation.values():
        if isinstance(value, str) and value.startswith("\u039e"):
            assert value not in rendered


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=10**9))
def test_cached_tokens_are_valid_exactly_when_within_input_tokens(total: int, cached: int) -> None:
    result = validate_event(0, _at(input_tokens=total, cached_input_tokens=cached), NOW, MAX_AGE)
    assert isinstance(result, SealedEvent) == (cached <= total)
