"""The OTLP JSON mapping of a trace export, read into the protobuf `ExportTraceServiceRequest`.

Written for the fields ingest reads (resource and span attributes, span ids and times, span events), strictly:
a field of the wrong type is an error, where protobuf's generic JSON parser let some pass as empty values, and it
is faster. Per the OTLP specification: ids are hex, 64-bit integers may be JSON numbers or decimal strings, keys
are lowerCamelCase (the fields' own snake_case names are read too), and unknown fields are ignored.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

_INTEGER = re.compile(r"-?[0-9]+\Z")
_ID_LENGTHS = {"traceId": 32, "spanId": 16}  # hex digits; an absent or empty id is the mapping's to refuse
# Arrays and key-value lists nest; a body nested deeper than this is refused rather than recursed into.
MAX_DEPTH = 16


class InvalidJson(ValueError):
    """The body is not an OTLP JSON trace export (the message names the kind of problem, never the data)."""


def read_request(body: Any) -> ExportTraceServiceRequest:
    """The request an OTLP JSON body (already decoded) describes; InvalidJson when it describes none."""
    request = ExportTraceServiceRequest()
    for resource_json in _list(_obj(body), "resourceSpans", "resource_spans"):
        resource_json = _obj(resource_json)
        resource_spans = request.resource_spans.add()
        resource = _obj(_get(resource_json, "resource", "resource", {}))
        _attributes(resource_spans.resource.attributes, resource)
        for scope_json in _list(resource_json, "scopeSpans", "scope_spans"):
            scope_spans = resource_spans.scope_spans.add()
            for span_json in _list(_obj(scope_json), "spans", "spans"):
                span_json = _obj(span_json)
                span = scope_spans.spans.add()
                span.trace_id = _id(span_json, "traceId", "trace_id")
                span.span_id = _id(span_json, "spanId", "span_id")
                span.name = _str(span_json, "name", "name")
                span.start_time_unix_nano = _uint(span_json, "startTimeUnixNano", "start_time_unix_nano")
                span.end_time_unix_nano = _uint(span_json, "endTimeUnixNano", "end_time_unix_nano")
                _attributes(span.attributes, span_json)
                for event_json in _list(span_json, "events", "events"):
                    event_json = _obj(event_json)
                    event = span.events.add()
                    event.name = _str(event_json, "name", "name")
                    _attributes(event.attributes, event_json)
    return request


def _get(node: dict[str, Any], camel: str, snake: str, default: Any) -> Any:
    value = node.get(camel, default)
    return node.get(snake, default) if value is default else value


def _obj(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidJson("an object was expected")
    return value


_ABSENT = object()


def _list(node: dict[str, Any], camel: str, snake: str) -> list[Any]:
    value = _get(node, camel, snake, _ABSENT)
    if value is _ABSENT:
        return []
    if not isinstance(value, list):
        raise InvalidJson("an array was expected")
    return value


def _str(node: dict[str, Any], camel: str, snake: str) -> str:
    value = _get(node, camel, snake, "")
    if not isinstance(value, str):
        raise InvalidJson("a string was expected")
    return value


def _id(node: dict[str, Any], camel: str, snake: str) -> bytes:
    value = _str(node, camel, snake)
    if value and len(value) != _ID_LENGTHS[camel]:
        raise InvalidJson("trace ids are 32 hex digits and span ids 16")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidJson("trace and span ids are hex strings") from None


def _int(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise InvalidJson("an integer was expected")
    if isinstance(value, str) and _INTEGER.match(value):
        value = int(value)
    if not isinstance(value, int) or not low <= value <= high:
        raise InvalidJson("an integer (a number or a decimal string) was expected")
    return value


def _uint(node: dict[str, Any], camel: str, snake: str) -> int:
    return _int(_get(node, camel, snake, 0), 0, 2**64 - 1)


def _attributes(target: Any, node: dict[str, Any], depth: int = 0) -> None:
    for pair in _list(node, "attributes", "attributes") if depth == 0 else _list(node, "values", "values"):
        pair = _obj(pair)
        kv = target.add()
        kv.key = _str(pair, "key", "key")
        _any_value(kv.value, _obj(pair.get("value", {})), depth)


def _any_value(target: AnyValue, node: dict[str, Any], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidJson("attribute values nest too deep")
    # One of them is meant to be set; each present is checked, and the last set is the value (protobuf's oneof).
    for camel, snake in _VALUE_KEYS:
        if camel in node or snake in node:
            _SETTERS[camel](target, _get(node, camel, snake, None), depth)


def _set_string(target: AnyValue, value: Any, depth: int) -> None:
    if not isinstance(value, str):
        raise InvalidJson("stringValue is a string")
    target.string_value = value


def _set_bool(target: AnyValue, value: Any, depth: int) -> None:
    if not isinstance(value, bool):
        raise InvalidJson("boolValue is a boolean")
    target.bool_value = value


def _set_int(target: AnyValue, value: Any, depth: int) -> None:
    target.int_value = _int(value, -(2**63), 2**63 - 1)


_SPECIAL_DOUBLES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _set_double(target: AnyValue, value: Any, depth: int) -> None:
    if isinstance(value, str) and value in _SPECIAL_DOUBLES:
        value = _SPECIAL_DOUBLES[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJson("doubleValue is a number")
    target.double_value = float(value)


def _set_bytes(target: AnyValue, value: Any, depth: int) -> None:
    if not isinstance(value, str):
        raise InvalidJson("bytesValue is a base64 string")
    try:
        target.bytes_value = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise InvalidJson("bytesValue is a base64 string") from None


def _set_array(target: AnyValue, value: Any, depth: int) -> None:
    array = target.array_value
    array.SetInParent()  # an empty array is still an array
    for item in _list(_obj(value), "values", "values"):
        _any_value(array.values.add(), _obj(item), depth + 1)


def _set_kvlist(target: AnyValue, value: Any, depth: int) -> None:
    target.kvlist_value.SetInParent()
    _attributes(target.kvlist_value.values, _obj(value), depth + 1)


_VALUE_KEYS = (
    ("stringValue", "string_value"),
    ("intValue", "int_value"),
    ("boolValue", "bool_value"),
    ("doubleValue", "double_value"),
    ("arrayValue", "array_value"),
    ("kvlistValue", "kvlist_value"),
    ("bytesValue", "bytes_value"),
)
_SETTERS = {
    "stringValue": _set_string,
    "intValue": _set_int,
    "boolValue": _set_bool,
    "doubleValue": _set_double,
    "arrayValue": _set_array,
    "kvlistValue": _set_kvlist,
    "bytesValue": _set_bytes,
}
