"""The guard's fast paths (known-safe key names, regex prefilters) decide exactly as the plain guard did:
same violations, same order, same PII kind, for any JSON and for values built to sit on each pattern's edge."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spendstream.common import guard
from tests.ingest import guard_reference as reference

KEYS = st.sampled_from(
    [
        "provider",
        "model",
        "tags",
        "feature",
        "input_tokens",
        "outputTokens",
        "prompt",
        "x",
        "systemPrompt",
        "messages",
        "bob@example.com",
        "Feature",
        "a b",
        "tags\n",
        "é",
    ]
) | st.text(max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=30,
)
# Values near every pattern: emails, phones, IPv4/IPv6, card numbers (valid Luhn or not), Unicode digits.
EDGY = st.text(alphabet="0123456789 +-().:@abcdefABCDEF\u0663\u00a0\n", max_size=30) | st.sampled_from(
    [
        "+1 415 555 0100",
        "(415) 555-0100",
        "+1234567",
        "415.555.0100",
        "10.0.0.12",
        "2001:db8::1",
        "face::b00c",
        "::1",
        "fe80::1%eth0",
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
        "4111111111111112",
        "a@b.cc",
        "1.2.3",
        "\u0664\u0661\u0661\u0661" * 4,
        " +1 415 555 0100 ",
    ]
)


def _decisions(violations: list[Any]) -> list[tuple[str, str, str]]:
    return [(v.field, v.code, v.message) for v in violations]


@settings(max_examples=300)
@given(JSON)
def test_any_json_gets_the_reference_decisions(value: Any) -> None:
    # Twice: the first call may learn key names, the second takes the fast path over them.
    expected = _decisions(reference.check_event(value))
    assert _decisions(guard.check_event(value)) == expected
    assert _decisions(guard.check_event(value)) == expected


@settings(max_examples=500)
@given(EDGY)
def test_any_tag_value_gets_the_reference_pii_kind(value: str) -> None:
    assert guard.pii_kind(value) == reference.pii_kind(value)


@given(st.dictionaries(KEYS, EDGY | st.integers(), max_size=6), st.dictionaries(KEYS, st.integers(), max_size=4))
def test_event_shaped_input_gets_the_reference_decisions(tags: dict[str, Any], fields: dict[str, Any]) -> None:
    event = {**fields, "tags": tags}
    assert _decisions(guard.check_event(event)) == _decisions(reference.check_event(event))
    assert _decisions(guard.check_event(event)) == _decisions(reference.check_event(event))


def test_learnt_key_names_stay_bounded_and_never_include_a_content_key() -> None:
    for i in range(guard._KNOWN_SAFE_MAX + 100):
        guard.check_event({f"k{i}": 1, "prompt_text": "x", "Odd Key": 2, "bob@example.com": 3})
    assert 0 < len(guard._KNOWN_SAFE) <= guard._KNOWN_SAFE_MAX
    assert not {"prompt_text", "Odd Key", "bob@example.com"} & guard._KNOWN_SAFE
    (violation,) = guard.check_event({"k1": 1, "prompt_text": "x"})
    assert violation.field == "prompt_text"
