"""OTLP/HTTP trace bodies in and answers out, in protobuf or in the OTLP JSON mapping.

Both encodings are read into the one protobuf `ExportTraceServiceRequest`, so the spans are mapped once
(otlp_spans.py); OTLP JSON by otlp_json.py. A body that cannot be read answers 400 without quoting it.
"""

from __future__ import annotations

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from spendstream.ingest.body import BodyError
from spendstream.ingest.otlp_json import InvalidJson, read_request

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
    try:
        return read_request(body)
    except (InvalidJson, ValueError, TypeError) as exc:  # protobuf's ValueError: a number out of its field's range
        reason = str(exc) if isinstance(exc, InvalidJson) else "a number is out of range"
        raise BodyError(400, "invalid_otlp", f"{_INVALID} (OTLP JSON): {reason}") from None


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
    if not (rejected_spans or error_message):
        return b"{}"
    # OTLP JSON writes int64 as a decimal string.
    partial = {"rejectedSpans": str(rejected_spans), "errorMessage": error_message}
    return orjson.dumps({"partialSuccess": partial})


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
