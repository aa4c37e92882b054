"""The privacy guard as it was before its fast paths (2026-12-01): the reference its decisions must equal.

Kept verbatim apart from this docstring; tests/ingest/test_guard_reference.py compares the two.

The privacy guard: refuses content-bearing keys and PII-looking tag values.

Importable by clients (an SDK can run the same check before sending) and used by ingest on every event.
It never returns or logs the offending *value*: a violation names the field path and a reason code only.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# The numeric fields of the usage event are the only keys allowed to contain a content word.
NUMERIC_EXCEPTIONS = frozenset({"input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"})

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
    # Every event repeats the same dozen key names, and this check was ~40 % of ingest's CPU (bench/): memoise
    # it. Only short keys are cached, so the cache stays a few hundred KiB whatever clients send.
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
    if _EMAIL.search(value):
        return "email"
    if _PHONE.match(value.strip()):
        return "phone"
    if _looks_like_ip(value):
        return "ip_address"
    for run in _DIGIT_RUN.findall(value):
        digits = re.sub(r"\D", "", run)
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            return "card_number"
    return None


_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.:@/-]{1,64}$")


def path_segment(key: object) -> str:
    """A key as it may appear in a field path: the client's key when it is an identifier, else `?`.

    A key can itself carry data (`{"tags": {"bob@example.com": "x"}}`), so anything that does not look like a
    field name is never echoed back.
    """
    return key if isinstance(key, str) and _SAFE_KEY.match(key) else "?"


_CONTAINERS = (dict, list)  # a tuple: isinstance checks it faster than `dict | list`


def _join(path: str, key: object) -> str:
    segment = path_segment(key)
    return f"{path}.{segment}" if path else segment


def _walk_keys(root: Any) -> Iterator[Violation]:
    # Iterative, not recursive: a client may nest as deep as the JSON parser allows (beyond Python's stack).
    # Paths are only built for containers and violations: scalars, the common case, cost one check each.
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str) and is_content_key(key):
                    # The path is the client's own key name, which is not content; the value is never shown.
                    yield Violation(
                        _join(path, key),
                        "content_field",
                        "fields that carry prompt or completion content are refused; send metadata only",
                    )
                elif isinstance(child, _CONTAINERS):
                    stack.append((child, _join(path, key)))
        elif isinstance(node, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node) if isinstance(child, _CONTAINERS))


def check_event(raw: Any) -> list[Violation]:
    """Every privacy violation in one decoded event: content keys at any depth, PII-looking tag values."""
    violations = sorted(_walk_keys(raw), key=lambda v: v.field)
    tags = raw.get("tags") if isinstance(raw, dict) else None
    if isinstance(tags, dict):
        for key, value in tags.items():
            if isinstance(value, str):
                kind = pii_kind(value)
                if kind is not None:
                    violations.append(
                        Violation(
                            f"tags.{path_segment(key)}",
                            "pii_value",
                            f"tag value looks like personal data ({kind}); send an opaque id instead",
                        )
                    )
    return violations
