"""OTLP/HTTP trace bodies in and answers out, in protobuf or in the OTLP JSON mapping.

Both encodings are read into the one protobuf `ExportTraceServiceRequest`, so the spans are mapped once
(otlp_spans.py). The JSON mapping differs from protobuf's canonical JSON in one place that matters here: trace
and span ids are hex strings, not base64; they are converted before the standard parser runs. Unknown fields are
ignored, as the OTLP specification asks of receivers. A body that cannot be read answers 400 without quoting it.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from spendstream.ingest.body import BodyError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MEDIA_TYPES = (PROTOBUF, JSON)

# google.rpc.Code of an HTTP status, for the protobuf `Status` an OTLP error answer carries.
_RPC_CODE = {400: 3, 401: 16, 403: 7, 413: 3, 415: 3, 429: 8, 503: 14}
_INVALID = "the body is not an OTLP ExportTraceServiceRequest"


def decode(media_type: str, raw: bytes) -> ExportTraceServiceRequest:
    """The request of a body in `media_type` (one of MEDIA_TYPES); BodyError(400) when it is not one."""
    if media_type == PROTOBUF:
        try:
            request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(raw)
            return request
        except DecodeError:
            raise BodyError(400, "invalid_otlp", _INVALID + " (protobuf)") from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BodyError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BodyError(400, "invalid_otlp", _INVALID + " (a JSON object)")
    _ids_to_base64(body)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(body, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError):
        # The parser's message may quote the input: never passed on.
        raise BodyError(400, "invalid_otlp", _INVALID + " (OTLP JSON)") from None
    return request


def encode_response(media_type: str, rejected_spans: int, error_message: str) -> bytes:
    """The ExportTraceServiceResponse in the request's encoding; `partial_success` only when something was
    refused (the specification leaves it unset on full success)."""
    response = ExportTraceServiceResponse()
    if rejected_spans or error_message:
        response.partial_success.rejected_spans = rejected_spans
        response.partial_success.error_message = error_message
    if media_type == PROTOBUF:
        encoded: bytes = response.SerializeToString()
        return encoded
    return orjson.dumps(json_format.MessageToDict(response))


def encode_status(status: int, message: str) -> bytes:
    """A protobuf `google.rpc.Status` (code, message): what an OTLP error answer to a protobuf request holds."""
    text = message.encode()
    return b"\x08" + _varint(_RPC_CODE.get(status, 2)) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


# Where ids sit in OTLP JSON, under either spelling a protobuf JSON parser accepts (lowerCamelCase or the
# field's own name).
_RESOURCE_SPANS = ("resourceSpans", "resource_spans")
_SCOPE_SPANS = ("scopeSpans", "scope_spans")
_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


def _ids_to_base64(body: dict[str, Any]) -> None:
    """Rewrite the hex ids of spans and their links in place as the base64 protobuf's JSON parser reads."""
    for resource_spans in _items(body, _RESOURCE_SPANS):
        for scope_spans in _items(resource_spans, _SCOPE_SPANS):
            for span in _items(scope_spans, ("spans",)):
                _convert(span)
                for link in _items(span, ("links",)):
                    _convert(link)


def _items(node: Any, keys: tuple[str, ...]) -> list[Any]:
    if not isinstance(node, dict):
        return []  # the parser then refuses the wrong type
    for key in keys:
        value = node.get(key)
        if isinstance(value, list):
            return value
    return []


def _convert(node: Any) -> None:
    if not isinstance(node, dict):
        return
    for key in _ID_KEYS:
        value = node.get(key)
        if isinstance(value, str):
            try:
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise BodyError(400, "invalid_otlp", "trace and span ids are hex strings in OTLP JSON") from None
