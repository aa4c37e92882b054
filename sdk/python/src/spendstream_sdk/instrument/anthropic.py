"""The official `anthropic` client: messages (create, stream=True, the `messages.stream()` helper), sync and
async, and the same under `client.beta.messages`."""

from __future__ import annotations

from typing import Any, TypeVar

try:
    import anthropic
except ImportError as missing:  # the `anthropic` extra, not a dependency of the SDK
    raise ImportError(
        "spendstream_sdk.instrument.anthropic needs anthropic: pip install 'spendstream-sdk[anthropic]'"
    ) from missing

from . import usage as read
from .calls import Recorder
from .resources import Answer, Endpoint, Package, patch_resources
from .streams import MessagesTap, Tap

C = TypeVar("C", anthropic.Anthropic, anthropic.AsyncAnthropic)


def _answer(result: Any) -> Answer:
    usage = getattr(result, "usage", None)
    model, tier = getattr(result, "model", None), getattr(usage, "service_tier", None)
    return (
        read.anthropic(usage),
        model if isinstance(model, str) and model else None,
        tier if isinstance(tier, str) and tier else None,
    )


def _stream(kwargs: dict[str, Any]) -> tuple[dict[str, Any], Tap]:
    return kwargs, MessagesTap()  # message_start and message_delta always carry the usage


MESSAGES = Endpoint(_answer, _stream)
PACKAGE = Package(
    endpoints={"/v1/messages": MESSAGES, "/v1/messages?beta=true": MESSAGES},
    model_class=anthropic.BaseModel,
    stream_class=anthropic.Stream,
    async_stream_class=anthropic.AsyncStream,
)


def instrument_anthropic(client: C, recorder: Recorder) -> C:
    """A copy of `client` (its own resource objects, the same HTTP connection pool) whose calls are metered."""
    copy = client.with_options()
    resources = [copy.messages, copy.beta.messages]
    patch_resources(resources, PACKAGE, recorder, is_async=isinstance(copy, anthropic.AsyncAnthropic))
    original_copy = copy.copy

    def metered_copy(**options: Any) -> Any:
        return instrument_anthropic(original_copy(**options), recorder)

    copy.copy = copy.with_options = metered_copy  # type: ignore[method-assign]
    return copy
