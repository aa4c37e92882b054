"""The privacy guard (spendstream.common.guard): content keys in any spelling and depth, PII-looking tag
values; it never fails on any JSON and never repeats a value it refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spendstream.common import guard
from spendstream.common.guard import check_event, is_content_key, pii_kind

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)


@pytest.mark.parametrize(
    "key",
    [
        "prompt",
        "prompts",
        "completion",
        "messages",
        "message",
        "content",
        "attachment",
        "response",
        "input",
        "text",
        "body",
        "output",
        "system_prompt",
        "systemPrompt",
        "SystemPrompt",
        "completion_text",
        "responseContent",
        "prompt_text",
        "user-message",
        "inputs",
        "promptId",
        "chat.messages",
        "RESPONSE_BODY",
    ],
)
def test_content_keys_are_recognised_in_any_spelling(key: str) -> None:
    assert is_content_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "reasoning_tokens",
        "feature",
        "route",
        "model",
        "provider",
        "context_window",
        "customer_id",
        "latency_ms",
        "task_type",
        "outputTokens",
    ],
)
def test_metadata_keys_and_numeric_fields_pass(key: str) -> None:
    assert not is_content_key(key)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("jane.doe@example.com", "email"),
        ("+1 415 555 0100", "phone"),
        ("(415) 555-0100", "phone"),
        ("10.0.0.12", "ip_address"),
        ("2001:db8::1", "ip_address"),
        ("4111 1111 1111 1111", "card_number"),
        ("5500-0000-0000-0004", "card_number"),
    ],
)
def test_pii_looking_values_are_recognised(value: str, kind: str) -> None:
    assert pii_kind(value) == kind


@pytest.mark.parametrize("value", ["chat", "cust-1234", "v1.2.3", "2026-11-23", "gpt-4o", "4111 1111 1111 1112"])
def test_ordinary_tag_values_pass(value: str) -> None:
    assert pii_kind(value) is None


def test_content_key_deep_inside_lists_is_refused_with_its_path() -> None:
    violations = check_event({"extra": [{"a": {"messages": []}}], "tags": {"prompt_text": "x"}})
    assert [(v.field, v.code) for v in violations] == [
        ("extra[0].a.messages", "content_field"),
        ("tags.prompt_text", "content_field"),
    ]


def test_a_key_that_carries_data_is_never_echoed_in_the_path() -> None:
    violations = check_event({"tags": {"jane doe's prompt": "x", "contact": "jane@example.com"}})
    assert {v.field for v in violations} == {"tags.?", "tags.contact"}


def test_nesting_deeper_than_the_python_stack_does_not_crash_the_guard() -> None:
    deep: Any = {"prompt": 1}
    for _ in range(5000):
        deep = {"x": [deep]}
    (violation,) = check_event(deep)
    assert violation.code == "content_field"


@given(JSON)
def test_guard_accepts_any_json_without_raising(value: Any) -> None:
    assert isinstance(check_event(value), list)


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.text(min_size=8, max_size=40), max_size=5))
def test_violations_never_contain_a_tag_value(tags: dict[str, str]) -> None:
    for violation in check_event({"tags": tags}):
        rendered = json.dumps([violation.field, violation.code, violation.message])
        for value in tags.values():
            if value not in {violation.code, *tags}:  # a value that happens to equal a key or code proves nothing
                assert value not in rendered


@given(
    st.sampled_from(["prompt", "message", "completion", "content", "response"]),
    st.sampled_from(["", "s"]),
    st.sampled_from(["", "system_", "user", "raw-"]),
    st.sampled_from(["", "_text", "Body", "_v2"]),
)
def test_any_variant_of_a_content_word_is_refused(word: str, plural: str, before: str, after: str) -> None:
    key = f"{before}{word}{plural}{after}"
    assert is_content_key(key)
    assert [v.code for v in check_event({key: "x"})] == ["content_field"]


def test_only_tag_values_found_clean_are_remembered_never_personal_data() -> None:
    email, clean = "remember-me-not@example.com", "feature-remembered"
    violations = check_event({"tags": {"user": email, "feature": clean}})
    assert [v.code for v in violations] == ["pii_value"]
    assert email not in guard._CLEAN_VALUES and clean in guard._CLEAN_VALUES
    # A remembered value gets the same verdict as a fresh one.
    assert check_event({"tags": {"feature": clean}}) == []
