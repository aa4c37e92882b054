"""A local HTTP server that answers like OpenAI and Anthropic, for driving the real client packages in tests.

It serves OpenAI's `POST /v1/chat/completions`, `/v1/responses`, `/v1/embeddings` (also under Azure's
`/openai/deployments/<name>/...`) and Anthropic's `POST /v1/messages` (and `/v1/messages/count_tokens`), each
streamed (SSE) or not, with the usage objects a test configures (cached, cache-write 5m/1h and reasoning tokens),
errors a test arms, and a record of every request received. Point a client at it:

    with ProviderServer() as provider:
        client = openai.OpenAI(base_url=provider.openai_url, api_key="test", max_retries=0)
        anthropic.Anthropic(base_url=provider.anthropic_url, api_key="test", max_retries=0)

Streams follow the providers' own shapes: OpenAI chat sends its usage-only final chunk (`choices: []`) only when
the request asks `stream_options.include_usage`; Responses sends usage on `response.completed`; Anthropic sends
input usage on `message_start` and cumulative output usage on `message_delta`.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY_WORDS = ["Hello", " from", " the", " local", " provider", "."]


def openai_chat_usage(
    prompt: int = 1200, completion: int = 300, cached: int = 1000, reasoning: int = 120
) -> dict[str, Any]:
    """A chat completions usage object: cached tokens are part of prompt_tokens, reasoning part of completion."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_responses_usage(
    input: int = 2000, output: int = 500, cached: int = 1500, reasoning: int = 200
) -> dict[str, Any]:
    """A Responses API usage object."""
    return {
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input + output,
    }


def openai_embeddings_usage(prompt: int = 42) -> dict[str, Any]:
    """An embeddings usage object (no completion tokens)."""
    return {"prompt_tokens": prompt, "total_tokens": prompt}


def anthropic_usage(
    input: int = 100, cache_read: int = 4000, cache_5m: int = 600, cache_1h: int = 400, output: int = 250
) -> dict[str, Any]:
    """An Anthropic Messages usage object: input_tokens excludes the cache read and the cache writes."""
    return {
        "input_tokens": input,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_5m + cache_1h,
        "cache_creation": {"ephemeral_5m_input_tokens": cache_5m, "ephemeral_1h_input_tokens": cache_1h},
        "output_tokens": output,
        "service_tier": "standard",
    }


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the server received, as the client sent it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Failure:
    """An armed error: the next `times` requests to `path` (any path when None) answer `status`."""

    status: int
    path: str | None
    times: int
    message: str = "the local provider refused this request"
    retry_after: str | None = None


@dataclass
class ProviderConfig:
    """What the server answers; tests change these fields between calls."""

    chat_usage: dict[str, Any] = field(default_factory=openai_chat_usage)
    responses_usage: dict[str, Any] = field(default_factory=openai_responses_usage)
    embeddings_usage: dict[str, Any] = field(default_factory=openai_embeddings_usage)
    messages_usage: dict[str, Any] = field(default_factory=anthropic_usage)
    # The model the response names; None answers with the requested model.
    response_model: str | None = None
    openai_service_tier: str | None = "default"
    # Seconds the server waits before each streamed event, so a stream visibly lasts.
    stream_delay: float = 0.0
    # A streamed answer fails after this many events (OpenAI: an error chunk; Anthropic: an `error` event).
    stream_error_after: int | None = None
    # A chat stream sends its usage chunk when asked (include_usage); False plays a server that never does.
    chat_stream_usage: bool = True
    # Anthropic's message_delta also repeats the input usage fields (the API does so on recent models).
    delta_repeats_input_usage: bool = False


class ProviderServer:
    """The local provider: a threaded HTTP server on a free port of 127.0.0.1."""

    def __init__(self, config: ProviderConfig | None = None) -> None:
        self.config = config or ProviderConfig()
        self.requests: list[ReceivedRequest] = []
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="provider-server", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_url(self) -> str:
        """The `base_url` for `openai.OpenAI` (the SDK appends paths to /v1)."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_url(self) -> str:
        """The `base_url` for `anthropic.Anthropic` (the SDK appends /v1/messages)."""
        return self.base_url

    def start(self) -> ProviderServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail(self, status: int, *, path: str | None = None, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` requests (to `path`, e.g. "/v1/messages") with an HTTP error `status`."""
        with self._lock:
            self._failures.append(Failure(status=status, path=path, times=times, retry_after=retry_after))

    def received(self, path: str) -> list[ReceivedRequest]:
        """The requests received on `path`, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _record(self, request: ReceivedRequest) -> Failure | None:
        with self._lock:
            self.requests.append(request)
            for failure in self._failures:
                if failure.path in (None, request.path) and failure.times > 0:
                    failure.times -= 1
                    return failure
            return None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that closed its connection (a stream closed early, a pool shut down) is not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(server: ProviderServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_ProviderHandler):
        provider = server

    return Handler


class _ProviderHandler(BaseHTTPRequestHandler):
    provider: ProviderServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest captures stderr, and request lines add nothing to a failure."""

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = self.path.split("?", 1)[0]
        if path.startswith("/openai/deployments/"):  # Azure OpenAI: /openai/deployments/<name>/chat/completions
            path = "/v1/" + path.split("/", 4)[4]
        request = ReceivedRequest("POST", path, {k.lower(): v for k, v in self.headers.items()}, body)
        failure = self.provider._record(request)
        if failure is not None:
            self._send_error(path, failure)
            return
        config = self.provider.config
        payload = body if isinstance(body, dict) else {}
        model = config.response_model or str(payload.get("model", "unknown-model"))
        stream = bool(payload.get("stream"))
        if path == "/v1/chat/completions":
            if stream:
                asked = bool((payload.get("stream_options") or {}).get("include_usage"))
                include_usage = asked and config.chat_stream_usage
                self._send_events(_chat_chunks(config, model, include_usage), sse_names=False, done=True)
            else:
                self._send_json(200, _chat_completion(config, model))
        elif path == "/v1/responses":
            if stream:
                self._send_events(_response_events(config, model), sse_names=True, done=False)
            else:
                self._send_json(200, _response(config, model, status="completed", usage=config.responses_usage))
        elif path == "/v1/embeddings":
            self._send_json(200, _embeddings(config, model, payload))
        elif path == "/v1/messages/count_tokens":
            self._send_json(200, {"input_tokens": config.messages_usage.get("input_tokens", 0)})
        elif path == "/v1/messages":
            if stream:
                self._send_events(_message_events(config, model), sse_names=True, done=False)
            else:
                self._send_json(200, _message(config, model, usage=config.messages_usage))
        else:
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _send_error(self, path: str, failure: Failure) -> None:
        if path.startswith("/v1/messages"):
            kind = "overloaded_error" if failure.status == 529 else "api_error"
            body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": failure.message}}
        else:
            body = {"error": {"message": failure.message, "type": "server_error", "param": None, "code": None}}
        headers = {"retry-after": failure.retry_after} if failure.retry_after else {}
        self._send_json(failure.status, body, headers)

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_events(self, events: Iterator[tuple[str, dict[str, Any]]], *, sse_names: bool, done: bool) -> None:
        config = self.provider.config
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            for index, (name, data) in enumerate(events):
                if config.stream_error_after is not None and index == config.stream_error_after:
                    self._write_chunk(_stream_error(name, sse_names))
                    break
                if config.stream_delay:
                    time.sleep(config.stream_delay)
                prefix = f"event: {name}\n" if sse_names else ""
                self._write_chunk(f"{prefix}data: {json.dumps(data)}\n\n".encode())
            else:
                if done:
                    self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client closed the stream early, as a caller breaking out of its loop does.
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _stream_error(name: str, sse_names: bool) -> bytes:
    if sse_names:
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return f"event: error\ndata: {json.dumps(error)}\n\n".encode()
    error = {"error": {"message": "the local provider failed mid-stream", "type": "server_error"}}
    return f"data: {json.dumps(error)}\n\n".encode()


def _chat_completion(config: ProviderConfig, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(REPLY_WORDS), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": config.chat_usage,
        "service_tier": config.openai_service_tier,
        "system_fingerprint": "fp_local",
    }


def _chat_chunks(config: ProviderConfig, model: str, include_usage: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": "chatcmpl-local",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "service_tier": config.openai_service_tier,
            "system_fingerprint": "fp_local",
            "choices": choices,
        }
        if include_usage:
            data["usage"] = usage  # null on every chunk but the last, as the API sends it
        return data

    yield "", chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    for word in REPLY_WORDS:
        yield "", chunk([{"index": 0, "delta": {"content": word}, "finish_reason": None}])
    yield "", chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if include_usage:
        yield "", chunk([], config.chat_usage)


def _response(config: ProviderConfig, model: str, *, status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    text = "".join(REPLY_WORDS) if status == "completed" else ""
    output = (
        [
            {
                "type": "message",
                "id": "msg_local",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
        if text
        else []
    )
    return {
        "id": "resp_local",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
        "service_tier": config.openai_service_tier,
    }


def _response_events(config: ProviderConfig, model: str) -> Iterator[tuple[str, dict[str, Any]]]:
    sequence = iter(range(1_000))
    text = "".join(REPLY_WORDS)
    item: dict[str, Any] = {"type": "message", "id": "msg_local", "status": "in_progress", "role": "assistant"}
    part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": []}
    at = {"item_id": "msg_local", "output_index": 0, "content_index": 0}

    def event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(sequence), **fields}

    yield event("response.created", response=_response(config, model, status="in_progress", usage=None))
    yield event("response.in_progress", response=_response(config, model, status="in_progress", usage=None))
    yield event("response.output_item.added", output_index=0, item=item | {"content": []})
    yield event("response.content_part.added", part=part, **at)
    for word in REPLY_WORDS:
        yield event("response.output_text.delta", delta=word, logprobs=[], **at)
    yield event("response.output_text.done", text=text, logprobs=[], **at)
    yield event("response.content_part.done", part=part | {"text": text}, **at)
    done_item = item | {"status": "completed", "content": [part | {"text": text}]}
    yield event("response.output_item.done", output_index=0, item=done_item)
    yield event(
        "response.completed", response=_response(config, model, status="completed", usage=config.responses_usage)
    )


def _embeddings(config: ProviderConfig, model: str, payload: dict[str, Any]) -> dict[str, Any]:
    inputs = payload.get("input")
    count = len(inputs) if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else 1
    vector = [0.25, -0.5, 0.125]
    packed: Any = (
        base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        if payload.get("encoding_format") == "base64"
        else vector
    )
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": packed} for i in range(count)],
        "model": model,
        "usage": config.embeddings_usage,
    }


def _message(config: ProviderConfig, model: str, *, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_local",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "".join(REPLY_WORDS)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def _message_events(config: ProviderConfig, model: str) -> Iterator[tuple[str, dict[str, Any]]]:
    usage = config.messages_usage
    # message_start carries the input side (and an early output count); message_delta the cumulative output.
    start_usage = {**usage, "output_tokens": 1}
    start = _message(config, model, usage=start_usage) | {"content": [], "stop_reason": None}
    yield "message_start", {"type": "message_start", "message": start}
    yield (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    yield "ping", {"type": "ping"}
    for word in REPLY_WORDS:
        yield (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
        )
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    delta_usage: dict[str, Any] = {"output_tokens": usage.get("output_tokens", 0)}
    if config.delta_repeats_input_usage:
        for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            delta_usage[key] = usage.get(key)
    yield (
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": delta_usage},
    )
    yield "message_stop", {"type": "message_stop"}
