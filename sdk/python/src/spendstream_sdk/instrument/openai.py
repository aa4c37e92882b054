"""The official `openai` client: chat completions, the Responses API and embeddings, sync and async."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

try:
    import openai
except ImportError as missing:  # the `openai` extra, not a dependency of the SDK
    raise ImportError(
        "spendstream_sdk.instrument.openai needs openai: pip install 'spendstream-sdk[openai]'"
    ) from missing

from . import usage as read
from .calls import Recorder
from .resources import Answer, Endpoint, Package, patch_resources
from .streams import ChatTap, ResponsesTap, Tap

C = TypeVar("C", openai.OpenAI, openai.AsyncOpenAI)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _answer(reader: Any) -> Any:
    def read_answer(result: Any) -> Answer:
        return (
            reader(getattr(result, "usage", None)),
            _text(getattr(result, "model", None)),
            _text(getattr(result, "service_tier", None)),
        )

    return read_answer


def _chat_stream(kwargs: dict[str, Any]) -> tuple[dict[str, Any], Tap]:
    """Ask for the usage chunk unless the caller did; the chunk the caller did not ask for is then withheld."""
    body = kwargs.get("body")
    if not isinstance(body, Mapping):
        return kwargs, ChatTap(hide_usage_chunk=False)
    options = body.get("stream_options")
    options = dict(options) if isinstance(options, Mapping) else {}
    if options.get("include_usage") is True:
        return kwargs, ChatTap(hide_usage_chunk=False)
    options["include_usage"] = True
    return {**kwargs, "body": {**body, "stream_options": options}}, ChatTap(hide_usage_chunk=True)


def _responses_stream(kwargs: dict[str, Any]) -> tuple[dict[str, Any], Tap]:
    return kwargs, ResponsesTap()  # response.completed always carries the usage


def _embeddings_stream(kwargs: dict[str, Any]) -> tuple[dict[str, Any], Tap]:
    # The API never streams embeddings; should it, a tap that reads a `usage` wherever it comes is the safe guess.
    return kwargs, ChatTap(hide_usage_chunk=False)


PACKAGE = Package(
    endpoints={
        "/chat/completions": Endpoint(_answer(read.openai_chat), _chat_stream),
        "/responses": Endpoint(_answer(read.openai_responses), _responses_stream),
        "/embeddings": Endpoint(_answer(read.openai_embeddings), _embeddings_stream),
    },
    model_class=openai.BaseModel,
    stream_class=openai.Stream,
    async_stream_class=openai.AsyncStream,
)


def instrument_openai(client: C, recorder: Recorder) -> C:
    """A copy of `client` (its own resource objects, the same HTTP connection pool) whose calls are metered."""
    copy = client.with_options()
    resources = [copy.chat.completions, copy.responses, copy.embeddings]
    patch_resources(resources, PACKAGE, recorder, is_async=isinstance(copy, openai.AsyncOpenAI))
    original_copy = copy.copy

    def metered_copy(**options: Any) -> Any:
        return instrument_openai(original_copy(**options), recorder)

    # client.with_options(timeout=...) on the instrumented client is instrumented too.
    copy.copy = copy.with_options = metered_copy  # type: ignore[method-assign]
    return copy
