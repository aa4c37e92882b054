"""The privacy guard (spendstream.guard): content keys in any spelling and depth, PII-looking tag values; it
never fails on any JSON and never repeats a value it refuses. The decision tables pin what it answers, each
case asked twice: the first call may learn key names and clean values, the second answers from those memos."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spendstream import guard
from spendstream.guard import Violation, check_event, is_content_key, pii_kind

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
        "cache_creation_input_tokens",
        "cache_creation_1h_input_tokens",
        "service_tier",
        "reservation_id",
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


def _decisions(violations: list[Violation]) -> list[tuple[str, str]]:
    return [(v.field, v.code) for v in violations]


# Values on each pattern's edge: emails, phones, IPv4/IPv6, card numbers (valid Luhn or not), Unicode digits.
@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("+1 415 555 0100", "phone"),
        (" +1 415 555 0100 ", "phone"),
        ("(415) 555-0100", "phone"),
        ("+1234567", "phone"),
        ("415.555.0100", "phone"),
        ("\u0663\u0663\u0663-\u0663\u0663\u0663-\u0663\u0663\u0663\u0663", "phone"),
        ("+1\u00a0415\u00a0555\u00a00100", "phone"),
        ("10.0.0.12", "ip_address"),
        ("10.0.0.1\n", "ip_address"),
        ("2001:db8::1", "ip_address"),
        ("face::b00c", "ip_address"),
        ("fe80::1%eth0", "ip_address"),
        ("::1", None),
        ("4111 1111 1111 1111", "card_number"),
        ("4111 1111 1111 1111\n", "card_number"),
        ("5500-0000-0000-0004", "card_number"),
        ("4111111111111112", None),
        ("\u0664\u0661\u0661\u0661" * 4, None),
        ("a@b.cc", "email"),
        ("1.2.3", None),
        ("", None),
        ("prod", None),
    ],
)
def test_edge_values_get_their_pii_kind(value: str, kind: str | None) -> None:
    assert pii_kind(value) == kind
    assert _decisions(check_event({"tags": {"k": value}})) == ([] if kind is None else [("tags.k", "pii_value")])
    assert _decisions(check_event({"tags": {"k": value}})) == ([] if kind is None else [("tags.k", "pii_value")])


# (key, at the top, as a tag key, as a key above a content key inside a list): the violations' paths.
KEY_CASES = [
    ("provider", [], [], ["extra[0].provider.prompt"]),
    ("model", [], [], ["extra[0].model.prompt"]),
    ("tags", [], [], ["extra[0].tags.prompt"]),
    ("feature", [], [], ["extra[0].feature.prompt"]),
    ("input_tokens", [], [], ["extra[0].input_tokens.prompt"]),
    ("outputTokens", [], [], ["extra[0].outputTokens.prompt"]),
    ("x", [], [], ["extra[0].x.prompt"]),
    ("Feature", [], [], ["extra[0].Feature.prompt"]),
    ("bob@example.com", [], [], ["extra[0].?.prompt"]),
    ("jane.roe@example.com", [], [], ["extra[0].?.prompt"]),
    ("4111111111111111", [], [], ["extra[0].?.prompt"]),
    ("a4111111111111111", [], [], ["extra[0].?.prompt"]),
    ("10.0.0.12", [], [], ["extra[0].?.prompt"]),
    ("tags\n", [], [], ["extra[0].?.prompt"]),
    ("a:b", [], [], ["extra[0].?.prompt"]),
    ("a" * 65, [], [], ["extra[0].?.prompt"]),
    ("jane.roe.prompt@example.com", ["?"], ["tags.?"], ["extra[0].?"]),
    ("a b", [], [], ["extra[0].?.prompt"]),
    ("\u00e9", [], [], ["extra[0].?.prompt"]),
    ("", [], [], ["extra[0].?.prompt"]),
    ("prompt", ["prompt"], ["tags.prompt"], ["extra[0].prompt"]),
    ("systemPrompt", ["systemPrompt"], ["tags.systemPrompt"], ["extra[0].systemPrompt"]),
    ("messages", ["messages"], ["tags.messages"], ["extra[0].messages"]),
]


@pytest.mark.parametrize(("key", "top", "tag", "nested"), KEY_CASES, ids=[repr(c[0]) for c in KEY_CASES])
def test_each_key_gets_its_violations_wherever_it_stands(
    key: str, top: list[str], tag: list[str], nested: list[str]
) -> None:
    for _ in range(2):
        assert check_event({key: 1}) == [guard.Violation(f, "content_field", _CONTENT) for f in top]
        assert _decisions(check_event({"tags": {key: "x"}})) == [(f, "content_field") for f in tag]
        assert _decisions(check_event({"extra": [{key: {"prompt": 1}}]})) == [(f, "content_field") for f in nested]


_CONTENT = "fields that carry prompt or completion content are refused; send metadata only"


def test_violations_come_sorted_by_path_then_pii_values_in_tag_order() -> None:
    event = {
        "z_prompt": 1,
        "tags": {"b": "bob@example.com", "messages": "x", "a": "10.0.0.12", "Odd Key": "+1 415 555 0100"},
        "a": [{"completion": 1}, {"x": [{"response": 2}]}],
    }
    expected = [
        ("a[0].completion", "content_field"),
        ("a[1].x[0].response", "content_field"),
        ("tags.messages", "content_field"),
        ("z_prompt", "content_field"),
        ("tags.b", "pii_value"),
        ("tags.a", "pii_value"),
        ("tags.?", "pii_value"),
    ]
    assert _decisions(check_event(event)) == expected
    assert _decisions(check_event(event)) == expected
    (email, *_) = check_event(event)[4:]
    assert email.message == "tag value looks like personal data (email); send an opaque id instead"


def test_learnt_key_names_stay_bounded_and_never_include_a_content_key() -> None:
    for i in range(guard._KNOWN_SAFE_MAX + 100):
        guard.check_event({f"k{i}": 1, "prompt_text": "x", "Odd Key": 2, "bob@example.com": 3})
    assert 0 < len(guard._KNOWN_SAFE) <= guard._KNOWN_SAFE_MAX
    assert not {"prompt_text", "Odd Key", "bob@example.com"} & guard._KNOWN_SAFE
    (violation,) = guard.check_event({"k1": 1, "prompt_text": "x"})
    assert violation.field == "prompt_text"


def test_remembered_clean_values_stay_bounded() -> None:
    for i in range(guard._CLEAN_VALUES_MAX + 100):
        assert guard.all_clean({f"value-{i}"})
    assert 0 < len(guard._CLEAN_VALUES) <= guard._CLEAN_VALUES_MAX
    assert not guard.all_clean({"value-1", "bob@example.com"})
    assert "bob@example.com" not in guard._CLEAN_VALUES


@given(JSON)
def test_what_the_memos_learn_never_changes_a_decision(value: Any) -> None:
    first = check_event(value)
    assert check_event(value) == first


def test_the_guard_imports_nothing_beyond_the_standard_library() -> None:
    # The client SDK installs it alone: no service dependency may come in with it.
    code = (
        "import sys; before = set(sys.modules); import spendstream.guard; "
        "print(sorted(m.split('.')[0] for m in set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    imported = set(ast.literal_eval(out)) - {"spendstream"}
    assert imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names


@pytest.mark.parametrize(
    ("key", "segment"),
    [
        ("feature", "feature"),
        ("customer_id", "customer_id"),
        ("team.name", "team.name"),
        ("systemPrompt", "systemPrompt"),
        ("Feature", "Feature"),
        ("a" * 64, "a" * 64),
        ("jane.roe@example.com", "?"),
        ("4111111111111111", "?"),
        ("a4111111111111111", "?"),
        ("+14155550100", "?"),
        ("10.0.0.12", "?"),
        ("jane@example.com", "?"),
        ("a b", "?"),
        ("a:b", "?"),
        ("a/b", "?"),
        ("1a", "?"),
        ("tags\n", "?"),
        ("\u00e9", "?"),
        ("", "?"),
        ("a" * 65, "?"),
        (3, "?"),
    ],
)
def test_a_key_is_echoed_only_when_it_is_a_name_the_schema_could_accept_holding_no_personal_data(
    key: object, segment: str
) -> None:
    assert guard.path_segment(key) == segment
