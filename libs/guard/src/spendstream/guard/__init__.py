"""The privacy guard: refuses content-bearing keys and PII-looking tag values.

One module, standard library only, so the server and a client SDK import the same rules (an SDK runs the check
before sending; ingest runs it on every event). It never returns or logs the offending *value*: a violation
names the field path and a reason code only.
"""

from __future__ import annotations

import functools
import ipaddress
import operator
import re
from dataclasses import dataclass
from typing import Any

# The numeric fields of the usage event are the only keys allowed to contain a content word.
NUMERIC_EXCEPTIONS = frozenset(
    {
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "reasoning_tokens",
        "cache_creation_input_tokens",
        "cache_creation_1h_input_tokens",
    }
)

# Words that name content. "Strong" words are also refused when glued to another word
# (`systemprompt`, `promptid`); the short generic ones only as a whole word, so `context` or
# `outputformatter`-like product names do not trip on `text` by accident.
_STRONG_WORDS = ("prompt", "completion", "message", "attachment", "response", "content")
_WEAK_WORDS = ("output", "input", "text", "body")
_ALL_WORDS = frozenset(_STRONG_WORDS + _WEAK_WORDS)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")

_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]{2,}")
_PHONE = re.compile(r"^\+\d[\d\s().-]{5,20}\d$|^\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}$")
_DIGIT_RUN = re.compile(r"(?:\d[ -]?){13,19}")
_IP_CANDIDATE = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_DIGIT = re.compile(r"\d")  # the same (Unicode) digits the patterns above match


@dataclass(frozen=True, slots=True)
class Violation:
    """One refused field: where it is and why, never what it held."""

    field: str
    code: str
    message: str


def _words(key: str) -> list[str]:
    return [w for w in _SPLIT.split(_CAMEL.sub("_", key).lower()) if w]


def is_content_key(key: str) -> bool:
    """True when `key` names prompt/completion content in any spelling (snake, camel, plural, glued)."""
    # Every event repeats the same dozen key names, and this check is a large share of ingest's CPU: memoise it.
    # Only short keys are cached, so the cache stays a few hundred KiB whatever clients send.
    return _is_content_key_cached(key) if len(key) <= _CACHED_KEY_LENGTH else _is_content_key(key)


_CACHED_KEY_LENGTH = 64


@functools.lru_cache(maxsize=4096)
def _is_content_key_cached(key: str) -> bool:
    return _is_content_key(key)


def _is_content_key(key: str) -> bool:
    words = _words(key)
    # `outputTokens` is a misspelt numeric field, not content: the schema answers it as an unknown field.
    if "_".join(words) in NUMERIC_EXCEPTIONS:
        return False
    for word in words:
        singular = word[:-1] if word.endswith("s") else word
        if word in _ALL_WORDS or singular in _ALL_WORDS:
            return True
        if any(word.startswith(s) or word.endswith(s) or singular.endswith(s) for s in _STRONG_WORDS):
            return True
    return False


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _looks_like_ip(value: str) -> bool:
    for candidate in _IP_CANDIDATE.findall(value):
        if candidate.count(".") == 3 or candidate.count(":") >= 2:
            try:
                ipaddress.ip_address(candidate.strip(".:"))
                return True
            except ValueError:
                continue
    return False


def pii_kind(value: str) -> str | None:
    """The kind of PII `value` looks like (email, phone, ip_address, card_number), or None."""
    # Each pattern runs only when the value has what any of its matches needs (an "@"; a digit and the minimum
    # length; three dots or two colons), so ordinary tag values ("chat", "prod", "cust-42") skip most of them.
    # The order of the checks, and so the kind reported, is unchanged.
    if "@" in value and _EMAIL.search(value):
        return "email"
    length = len(value)
    has_digit = length >= 8 and _DIGIT.search(value) is not None
    if has_digit:
        # A phone number is `+` and at least 7 more characters, or at least 12 (`415 555 0100`).
        stripped = value.strip()
        if (len(stripped) >= 12 or stripped[:1] == "+") and _PHONE.match(stripped):
            return "phone"
    if (value.count(".") >= 3 or value.count(":") >= 2) and _looks_like_ip(value):
        return "ip_address"
    if has_digit and length >= 13:  # a card number has at least 13 digits
        for run in _DIGIT_RUN.findall(value):
            digits = re.sub(r"\D", "", run)
            if 13 <= len(digits) <= 19 and _luhn_ok(digits):
                return "card_number"
    return None


# A name the schema could accept: a letter, then letters, digits, `_`, `.`, `-` (field names in any case, so a
# refused `systemPrompt` is named; tag keys). No `@`, `:`, `/`, space, and no leading digit.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def path_segment(key: object) -> str:
    """A key as it may appear in a field path: the client's key when it is a name the schema could accept and
    the personal-data detector finds nothing in it, else `?`.

    A key can itself carry data (`{"tags": {"jane.roe@example.com": "x"}}`, a tag key `4111111111111111`), so a
    key that is not plainly a field name is never echoed back, in a refusal or in a rejection record.
    """
    return key if isinstance(key, str) and _NAME.fullmatch(key) and pii_kind(key) is None else "?"


_CONTAINERS = (dict, list)  # a tuple: isinstance checks it faster than `dict | list`
_FIELD = operator.attrgetter("field")

# Key names already found not to be content keys, so a dict whose keys are all known (every event repeats the
# same dozen) is checked with one C-level set comparison instead of a call per key. Only names the schema could
# accept and that hold no personal data are learnt (lower-case identifiers, the tag-key pattern): they are field
# names, never data, and each is its own path segment. Bounded: when full it starts over, so clients sending
# random names cannot grow it.
_KNOWN_SAFE: set[str] = set()
_KNOWN_SAFE_MAX = 4096
_LEARNABLE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


def remember(known: set[str], value: str, limit: int) -> None:
    """Add to a bounded memo; a full one starts over, so what clients send cannot grow it."""
    if len(known) >= limit:
        known.clear()
    known.add(value)


def _learn(key: str) -> None:
    # A learnt name is its own path segment (_join): only one path_segment echoes.
    if _LEARNABLE.fullmatch(key) and pii_kind(key) is None:
        remember(_KNOWN_SAFE, key, _KNOWN_SAFE_MAX)


def _join(path: str, key: object) -> str:
    segment = key if type(key) is str and key in _KNOWN_SAFE else path_segment(key)
    return f"{path}.{segment}" if path else segment


def _walk_keys(root: Any) -> list[Violation]:
    # Iterative, not recursive: a client may nest as deep as the JSON parser allows (beyond Python's stack).
    # Paths are only built for containers and violations: scalars, the common case, cost one check each.
    violations: list[Violation] = []
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if _KNOWN_SAFE.issuperset(node):
                for key, child in node.items():
                    if isinstance(child, _CONTAINERS):
                        stack.append((child, _join(path, key)))
                continue
            for key, child in node.items():
                if isinstance(key, str) and is_content_key(key):
                    # The path is the client's own key name, which is not content; the value is never shown.
                    violations.append(
                        Violation(
                            _join(path, key),
                            "content_field",
                            "fields that carry prompt or completion content are refused; send metadata only",
                        )
                    )
                    continue
                if type(key) is str and key not in _KNOWN_SAFE:
                    _learn(key)
                if isinstance(child, _CONTAINERS):
                    stack.append((child, _join(path, key)))
        elif isinstance(node, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node) if isinstance(child, _CONTAINERS))
    return violations


# Tag values already found not to look like PII. Clients repeat the same few (features, environments, plans,
# customer ids), and pii_kind is a visible share of ingest's CPU. Only clean values are kept: they are accepted and
# stored anyway, while a value that looked like personal data is never held. Bounded like _KNOWN_SAFE.
_CLEAN_VALUES: set[str] = set()
_CLEAN_VALUES_MAX = 16_384


def _pii_kind_remembering_clean(value: str) -> str | None:
    if value in _CLEAN_VALUES:
        return None
    kind = pii_kind(value)
    if kind is None:
        remember(_CLEAN_VALUES, value, _CLEAN_VALUES_MAX)
    return kind


def all_clean(values: set[str]) -> bool:
    """Whether no value of the set looks like personal data; the clean ones are remembered (_CLEAN_VALUES), so a
    set of values seen before costs one C-level set difference. ingest's fast path checks a batch's tags so."""
    for value in values - _CLEAN_VALUES:
        if pii_kind(value) is not None:
            return False
        remember(_CLEAN_VALUES, value, _CLEAN_VALUES_MAX)
    return True


def check_event(raw: Any) -> list[Violation]:
    """Every privacy violation in one decoded event: content keys at any depth, PII-looking tag values."""
    violations = _walk_keys(raw)
    if len(violations) > 1:
        violations.sort(key=_FIELD)  # stable: violations at one path keep the walk's order
    tags = raw.get("tags") if isinstance(raw, dict) else None
    if isinstance(tags, dict):
        for key, value in tags.items():
            if isinstance(value, str):
                kind = _pii_kind_remembering_clean(value)
                if kind is not None:
                    violations.append(
                        Violation(
                            f"tags.{path_segment(key)}",
                            "pii_value",
                            f"tag value looks like personal data ({kind}); send an opaque id instead",
                        )
                    )
    return violations
