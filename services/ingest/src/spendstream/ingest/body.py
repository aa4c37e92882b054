"""Reading an untrusted batch within bounds: size before and after gzip, media type (HTTP), and the batch's JSON
shape, which HTTP and the Kafka intake check with the one `parse_batch`, so both answer alike."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import Request

from spendstream.common.events import MAX_EVENTS_PER_BATCH


class BodyError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def read_body(request: Request, max_bytes: int, max_inflated: int) -> bytes:
    """The request's JSON bytes, inflated, within the size caps; not parsed yet (the fast path reads bytes)."""
    _, raw = await read_bounded(request, max_bytes, max_inflated, ("application/json",))
    return raw


async def read_bounded(
    request: Request, max_bytes: int, max_inflated: int, media_types: tuple[str, ...]
) -> tuple[str, bytes]:
    """The request's media type (one of `media_types`) and its bytes, inflated, within the size caps."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in media_types:
        raise BodyError(415, "unsupported_media_type", f"send Content-Type: {' or '.join(media_types)}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyError(413, "payload_too_large", f"request bodies are at most {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:  # a missing or lying Content-Length is caught while streaming
            raise BodyError(413, "payload_too_large", f"request bodies are at most {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        raw = _gunzip(raw, max_inflated)
    elif encoding not in ("identity", ""):
        raise BodyError(415, "unsupported_encoding", "Content-Encoding may be gzip or identity")
    return media_type, raw


def parse_batch(raw: bytes) -> list[Any]:
    """The events of a batch `{"events": [ ... ]}`, decoded but not validated; raises BodyError (status and
    code as HTTP answers them; the Kafka intake rejects the record with the same code) for any other shape."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BodyError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise BodyError(422, "invalid_batch", 'the body must be {"events": [ ... ]}')
    if len(body) > 1:
        extra = len(body) - 1
        raise BodyError(422, "unknown_field", f"unknown top-level field(s): {extra}; only 'events' is allowed")
    events: list[Any] = body["events"]
    if len(events) > MAX_EVENTS_PER_BATCH:
        raise BodyError(413, "too_many_events", f"at most {MAX_EVENTS_PER_BATCH} events per request")
    if not events:
        raise BodyError(422, "empty_batch", "the batch holds no events")
    return events


def _gunzip(raw: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)  # never inflate more than the cap: gzip bombs stop here
    except zlib.error:
        raise BodyError(400, "invalid_gzip", "the body is not valid gzip") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyError(413, "payload_too_large", f"inflated bodies are at most {limit} bytes")
    return out
