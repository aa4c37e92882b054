"""Reading an untrusted request body within bounds: size before and after gzip, media type, JSON shape."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import Request


class BodyError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def read_body(request: Request, max_bytes: int, max_inflated: int) -> bytes:
    """The request's JSON bytes, inflated, within the size caps; not parsed yet (the fast path reads bytes)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise BodyError(415, "unsupported_media_type", "send Content-Type: application/json")
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
    return raw


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BodyError(400, "invalid_json", "the body is not valid JSON") from None


def _gunzip(raw: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)  # never inflate more than the cap: gzip bombs stop here
    except zlib.error:
        raise BodyError(400, "invalid_gzip", "the body is not valid gzip") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyError(413, "payload_too_large", f"inflated bodies are at most {limit} bytes")
    return out
