"""The token counts of one provider answer, read from the usage object the provider reported, and nothing else.

Each reader takes the client package's usage model (or anything with the same attribute names) and returns None
when the answer carried no usage. A detail the provider did not report stays None; a reported 0 stays 0.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts in spendstream's terms: every part (cached, cache write, reasoning) is inside its total."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_creation_1h_input_tokens: int | None = None


def count(owner: object, name: str) -> int | None:
    """`owner.name` when it is a count (an int, not a bool), else None."""
    value = getattr(owner, name, None)
    return value if type(value) is int else None


def openai_chat(usage: object) -> Usage | None:
    """Chat completions: prompt_tokens includes the cached (and cache-written) tokens, completion_tokens the
    reasoning tokens."""
    prompt, completion = count(usage, "prompt_tokens"), count(usage, "completion_tokens")
    if prompt is None:
        return None
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return Usage(
        input_tokens=prompt,
        output_tokens=completion or 0,
        cached_input_tokens=count(prompt_details, "cached_tokens"),
        reasoning_tokens=count(completion_details, "reasoning_tokens"),
        cache_creation_input_tokens=count(prompt_details, "cache_write_tokens"),
    )


def openai_responses(usage: object) -> Usage | None:
    """Responses API: input_tokens includes the cached tokens, output_tokens the reasoning tokens."""
    input_tokens, output_tokens = count(usage, "input_tokens"), count(usage, "output_tokens")
    if input_tokens is None:
        return None
    input_details = getattr(usage, "input_tokens_details", None)
    output_details = getattr(usage, "output_tokens_details", None)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens or 0,
        cached_input_tokens=count(input_details, "cached_tokens"),
        reasoning_tokens=count(output_details, "reasoning_tokens"),
        cache_creation_input_tokens=count(input_details, "cache_write_tokens"),
    )


def openai_embeddings(usage: object) -> Usage | None:
    """Embeddings: input only."""
    prompt = count(usage, "prompt_tokens")
    return None if prompt is None else Usage(input_tokens=prompt, output_tokens=0)


def anthropic(usage: object, output_usage: object = None) -> Usage | None:
    """Anthropic Messages: `input_tokens` excludes the cache, so the input total is input_tokens +
    cache_read_input_tokens + cache_creation_input_tokens, the read and the writes being its parts.

    `output_usage` is a streamed answer's last message_delta usage: its output count is cumulative and it may
    repeat the input fields, which then take precedence over message_start's."""
    uncached = _latest(output_usage, usage, "input_tokens")
    if uncached is None:
        return None
    cache_read = _latest(output_usage, usage, "cache_read_input_tokens")
    cache_creation = _latest(output_usage, usage, "cache_creation_input_tokens")
    cache_1h = count(getattr(usage, "cache_creation", None), "ephemeral_1h_input_tokens")
    return Usage(
        input_tokens=uncached + (cache_read or 0) + (cache_creation or 0),
        output_tokens=_latest(output_usage, usage, "output_tokens") or 0,
        cached_input_tokens=cache_read,
        cache_creation_input_tokens=cache_creation,
        # The 1h writes are part of the cache writes; with no write total reported, they have nothing to be part of.
        cache_creation_1h_input_tokens=cache_1h if cache_creation is not None else None,
    )


def _latest(later: object, earlier: object, name: str) -> int | None:
    value = count(later, name)
    return value if value is not None else count(earlier, name)
