"""Streamed answers: the caller keeps the client's own stream object (same class, same iterator and context
manager); its iterator is wrapped to read the usage as it passes, and the call is recorded once, when the stream
ends, fails, is closed, or is garbage collected unread — with the usage the provider reported by then, or with
the reason it reported none. Latency runs until that moment: the stream's last byte, or the caller's close.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol, TypeVar

from . import usage as read
from .calls import NO_USAGE_REPORTED, STREAM_CLOSED_EARLY, STREAM_ERROR, Call
from .usage import Usage

S = TypeVar("S")

_ENDED, _CLOSED, _FAILED = "ended", "closed", "failed"

RESPONSE_EVENTS = frozenset({"response.created", "response.in_progress", "response.queued"})
RESPONSE_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class Tap(Protocol):
    """Reads one kind of stream's events for usage. `observe` returns True for an event the caller must not see."""

    model: str | None
    service_tier: str | None
    ended: bool  # the provider's stream reached its last event

    def observe(self, event: Any) -> bool: ...

    def usage(self) -> Usage | None: ...


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class ChatTap:
    """OpenAI chat completion chunks; usage comes on a final chunk with no choices when include_usage is set."""

    def __init__(self, hide_usage_chunk: bool) -> None:
        self.hide_usage_chunk = hide_usage_chunk
        self.model: str | None = None
        self.service_tier: str | None = None
        self.ended = False
        self._usage: Usage | None = None

    def observe(self, event: Any) -> bool:
        self.model = _text(getattr(event, "model", None)) or self.model
        self.service_tier = _text(getattr(event, "service_tier", None)) or self.service_tier
        choices = getattr(event, "choices", None) or ()
        if any(getattr(choice, "finish_reason", None) for choice in choices):
            self.ended = True
        reported = getattr(event, "usage", None)
        if reported is None:
            return False
        self._usage = read.openai_chat(reported) or self._usage
        # Only the usage-only chunk the wrapper asked for is withheld; a chunk with choices is the caller's.
        return self.hide_usage_chunk and not choices

    def usage(self) -> Usage | None:
        return self._usage


class ResponsesTap:
    """OpenAI Responses API events; usage comes on the terminal `response.completed` (or incomplete/failed)."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.service_tier: str | None = None
        self.ended = False
        self._usage: Usage | None = None

    def observe(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind in RESPONSE_EVENTS or kind in RESPONSE_TERMINAL_EVENTS:
            response = getattr(event, "response", None)
            self.model = _text(getattr(response, "model", None)) or self.model
            self.service_tier = _text(getattr(response, "service_tier", None)) or self.service_tier
            if kind in RESPONSE_TERMINAL_EVENTS:
                self.ended = True
                self._usage = read.openai_responses(getattr(response, "usage", None)) or self._usage
        return False

    def usage(self) -> Usage | None:
        return self._usage


class MessagesTap:
    """Anthropic message events: `message_start` carries the input usage, each `message_delta` the cumulative
    output usage."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.service_tier: str | None = None
        self.ended = False
        self._start_usage: object = None
        self._delta_usage: object = None

    def observe(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            message = getattr(event, "message", None)
            self.model = _text(getattr(message, "model", None)) or self.model
            self._start_usage = getattr(message, "usage", None)
            self.service_tier = _text(getattr(self._start_usage, "service_tier", None))
        elif kind == "message_delta":
            self._delta_usage = getattr(event, "usage", None) or self._delta_usage
        elif kind == "message_stop":
            self.ended = True
        return False

    def usage(self) -> Usage | None:
        return read.anthropic(self._start_usage, self._delta_usage)


def _finish(call: Call, tap: Tap, how: str) -> None:
    if how == _FAILED:
        reason = STREAM_ERROR
    elif how == _ENDED or tap.ended:
        reason = NO_USAGE_REPORTED
    else:
        reason = STREAM_CLOSED_EARLY
    call.finish(tap.usage(), tap.model, tap.service_tier, reason)


class _Pulling:
    """Whether the wrapper is inside the client's own iterator: its cleanup closes the response, and that close
    is the stream ending, which the wrapper records with the right cause itself."""

    active = False


def meter_stream(stream: S, tap: Tap, call: Call) -> S:
    """Wrap a sync stream (openai.Stream, anthropic.Stream) in place and return it."""
    target: Any = stream
    inner: Iterator[Any] = target._iterator
    pulling = _Pulling()

    def metered() -> Iterator[Any]:
        try:
            while True:
                pulling.active = True
                try:
                    event = next(inner)
                except StopIteration:
                    break
                finally:
                    pulling.active = False
                if not tap.observe(event):
                    yield event
        except GeneratorExit:
            _finish(call, tap, _CLOSED)
            raise
        except BaseException:
            _finish(call, tap, _FAILED)
            raise
        _finish(call, tap, _ENDED)

    target._iterator = metered()
    response = target.response
    close = response.close

    def close_and_record() -> None:
        try:
            close()
        finally:
            if not pulling.active:
                _finish(call, tap, _CLOSED)

    response.close = close_and_record
    _record_when_collected(stream, call, tap)
    return stream


def meter_async_stream(stream: S, tap: Tap, call: Call) -> S:
    """Wrap an async stream (openai.AsyncStream, anthropic.AsyncStream) in place and return it."""
    target: Any = stream
    inner: AsyncIterator[Any] = target._iterator
    pulling = _Pulling()

    async def metered() -> AsyncIterator[Any]:
        try:
            while True:
                pulling.active = True
                try:
                    event = await inner.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    pulling.active = False
                if not tap.observe(event):
                    yield event
        except GeneratorExit:
            _finish(call, tap, _CLOSED)
            raise
        except BaseException:
            _finish(call, tap, _FAILED)
            raise
        _finish(call, tap, _ENDED)

    target._iterator = metered()
    response = target.response
    aclose = response.aclose

    async def aclose_and_record() -> None:
        try:
            await aclose()
        finally:
            if not pulling.active:
                _finish(call, tap, _CLOSED)

    response.aclose = aclose_and_record
    _record_when_collected(stream, call, tap)
    return stream


def _record_when_collected(stream: object, call: Call, tap: Tap) -> None:
    # A stream dropped without being read or closed is still a call the provider billed.
    finalizer = weakref.finalize(stream, _finish, call, tap, _CLOSED)
    finalizer.atexit = False  # at interpreter exit the meter may already be closed
