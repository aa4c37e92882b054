"""ingest's OTLP/HTTP surface: `POST /v1/traces`, GenAI spans in, one usage event per span through the same
acceptor as `POST /v1/events` (guard, schema, dedupe, rate limit, quota, encryption, publish).

Answers as the OTLP specification asks: 200 with an `ExportTraceServiceResponse` in the request's encoding, whose
`partial_success` counts the refused spans and names why (attribute keys and reason codes, never a value); 400,
413 and 415 for a body that cannot be read (not retryable); 429 and 503 with `Retry-After` when the spans may be
sent again (rate limit or quota; Kafka did not acknowledge). Errors answer a protobuf `google.rpc.Status` to a
protobuf request and the one error body (`{"error", "message"}`) to a JSON one.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the Annotated[..., Depends(auth)]
# parameters at definition time, where `auth` is a local of the router factory.

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from spendstream.common.errors import AUTH, responses
from spendstream.common.events import MAX_EVENTS_PER_BATCH
from spendstream.common.http_auth import Caller
from spendstream.common.key_backoff import LogPace, report
from spendstream.common.tenants import KeyUnavailable
from spendstream.ingest import metrics
from spendstream.ingest.api import CountedRoute
from spendstream.ingest.batches import BatchAcceptor, PublishFailed
from spendstream.ingest.body import BodyError, read_bounded
from spendstream.ingest.fastpath import CheckedBatch
from spendstream.ingest.limits import LimitExceeded
from spendstream.ingest.otlp_body import JSON, MEDIA_TYPES, PROTOBUF, decode, encode_response, encode_status
from spendstream.ingest.otlp_spans import CAPTURE_OFF, Refused, attributes, resource_tags, usage_event
from spendstream.ingest.settings import IngestSettings
from spendstream.ingest.workspaces import WorkspaceDirectory

log = logging.getLogger(__name__)

# How many distinct reasons the error message lists; the rest are counted, so the message stays short.
_MAX_REASONS = 8


@dataclass
class SpanOutcome:
    """What became of a request's spans."""

    events: list[dict[str, Any]] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    ignored: int = 0


def map_request(request: Any) -> SpanOutcome:
    """Every span of an ExportTraceServiceRequest: its usage event, its refusal, or ignored."""
    outcome = SpanOutcome()
    for resource_spans in request.resource_spans:
        resource = resource_tags(attributes(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                mapped = usage_event(span, resource)
                if mapped is None:
                    outcome.ignored += 1
                elif isinstance(mapped, Refused):
                    outcome.refused.append(mapped)
                else:
                    outcome.events.append(mapped)
    return outcome


def error_message(refused: list[Refused]) -> str:
    """`partial_success.error_message`: each reason once with its count and keys, and how to stop sending
    content when that is the reason."""
    if not refused:
        return ""
    reasons = Counter((r.code, r.keys, r.message) for r in refused)
    parts = []
    for (code, keys, message), count in reasons.most_common(_MAX_REASONS):
        named = f"; keys {', '.join(keys)}" if keys else ""
        parts.append(f"{count} span{'s' if count > 1 else ''} refused ({code}: {message}{named})")
    if len(reasons) > _MAX_REASONS:
        parts.append(f"and {sum(c for _, c in reasons.most_common()[_MAX_REASONS:])} more for other reasons")
    text = "; ".join(parts)
    if any(r.code == "content_refused" for r in refused):
        text += f". {CAPTURE_OFF}"
    return text


def _refused_by_acceptor(code: str, path: str) -> Refused:
    # The acceptor's field path is masked by the guard (`tags.?` for an odd key) and names no value.
    return Refused(code, (path,) if path else (), "the event contract refuses it")


def _answer(media_type: str, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    metrics.REQUESTS.labels(str(status)).inc()
    if media_type == PROTOBUF:
        return Response(encode_status(status, message), status_code=status, media_type=PROTOBUF, headers=headers)
    body = orjson.dumps({"error": code, "message": message})
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def _request_schema() -> dict[str, Any]:
    """The OTLP JSON request as far as ingest reads it (otlp_json.py, which also reads span `events` and nested
    array and key-value-list values, and checks ids and numbers closer than stated here). OTLP/JSON receivers
    ignore unknown fields, so every object stays open; kept shallow, so generating examples of it stays cheap."""
    any_value = {
        "type": "object",
        "description": "one of stringValue, boolValue, intValue (int64: a number or a decimal string), "
        "doubleValue, bytesValue (base64), arrayValue {values}, kvlistValue {values}",
        "properties": {
            "stringValue": {"type": "string"},
            "boolValue": {"type": "boolean"},
            "intValue": {"type": ["string", "integer"]},
            "doubleValue": {"type": ["number", "string"]},
            "bytesValue": {"type": "string"},
            "arrayValue": {"type": "object"},
            "kvlistValue": {"type": "object"},
        },
    }
    key_values = {
        "type": "array",
        "items": {"type": "object", "properties": {"key": {"type": "string"}, "value": any_value}},
    }
    nanos = {"type": ["string", "integer"], "description": "uint64 nanoseconds since the epoch"}
    span = {
        "type": "object",
        "properties": {
            "traceId": {"type": "string", "description": "32 hex digits"},
            "spanId": {"type": "string", "description": "16 hex digits"},
            "name": {"type": "string"},
            "startTimeUnixNano": nanos,
            "endTimeUnixNano": nanos,
            "attributes": key_values,
            "events": {"type": "array", "items": {"type": "object"}},
        },
    }
    scope_spans = {"type": "object", "properties": {"spans": {"type": "array", "items": span}}}
    resource_spans = {
        "type": "object",
        "properties": {
            "resource": {"type": "object", "properties": {"attributes": key_values}},
            "scopeSpans": {"type": "array", "items": scope_spans},
        },
    }
    return {"type": "object", "properties": {"resourceSpans": {"type": "array", "items": resource_spans}}}


def _response_schema() -> dict[str, Any]:
    partial = {
        "type": "object",
        "properties": {
            "rejectedSpans": {"type": "string", "pattern": "^[0-9]+$", "description": "int64, as OTLP JSON writes"},
            "errorMessage": {"type": "string"},
        },
    }
    return {"type": "object", "properties": {"partialSuccess": partial}}


_BINARY = {"schema": {"type": "string", "format": "binary"}}


def build_otlp_router(
    settings: IngestSettings, acceptor: BatchAcceptor, workspaces: WorkspaceDirectory, auth: Any
) -> APIRouter:
    router = APIRouter(tags=["ingest"], route_class=CountedRoute)
    errors = responses(
        *AUTH,
        400,
        413,
        415,
        422,
        503,
        s400="the body is not an OTLP ExportTraceServiceRequest in the declared encoding (not retryable)",
        s422="a header does not match the schema (the body's own problems are 400)",
        s429="rate limited, over the monthly quota, or too many failed authentications; see `Retry-After` "
        "(retryable, as OTLP specifies)",
        s503="nothing was accepted, export the same spans again after `Retry-After` (retryable): the event log "
        "cannot take them now, or the workspace's data key cannot be unwrapped by this server's KEK",
    )
    for status in (400, 413, 415, 429, 503):  # a protobuf request's error is a protobuf google.rpc.Status
        errors[status]["content"] = {PROTOBUF: _BINARY}
    key_log = LogPace()

    @router.post(
        "/v1/traces",
        status_code=200,
        response_class=Response,
        responses={
            200: {
                "description": "the spans were taken; `partialSuccess` counts those refused and says why",
                "content": {JSON: {"schema": _response_schema()}, PROTOBUF: _BINARY},
            },
            **errors,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _request_schema()}, PROTOBUF: _BINARY},
            }
        },
        summary="OTLP/HTTP traces: one usage event per GenAI span with token counts (metadata only)",
    )
    async def post_traces(request: Request, principal: Annotated[Caller, Depends(auth)]) -> Response:
        declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
        answer_as = PROTOBUF if declared == PROTOBUF else JSON
        try:
            media_type, raw = await read_bounded(
                request, settings.max_body_bytes, settings.max_inflated_bytes, MEDIA_TYPES
            )
            export = decode(media_type, raw)
        except BodyError as exc:
            return _answer(answer_as, exc.status, exc.code, exc.message)
        outcome = map_request(export)
        refused = list(outcome.refused)
        workspace = workspaces.get(principal.workspace_id)
        quota = workspace.monthly_event_quota if workspace is not None else -1
        accepted = duplicates = 0
        try:
            for start in range(0, len(outcome.events), MAX_EVENTS_PER_BATCH):
                chunk = outcome.events[start : start + MAX_EVENTS_PER_BATCH]
                # As /v1/events: a batch whose every event is valid takes the fast path (fastpath.py), any other
                # the explaining one. Every event has its id, so `name_absent` is never asked.
                events: list[Any] | CheckedBatch | None = acceptor.check_fast(orjson.dumps({"events": chunk}), str)
                result = await acceptor.accept(
                    principal.workspace_id,
                    chunk if events is None else events,
                    "otlp",
                    quota=quota,
                    traceparent=request.headers.get("traceparent"),
                )
                accepted += result.accepted
                duplicates += result.duplicates
                spans_refused = {r.index for r in result.rejected}
                for index in sorted(spans_refused):
                    first = next(r for r in result.rejected if r.index == index)
                    refused.append(_refused_by_acceptor(first.code, first.field))
        except LimitExceeded as exc:
            metrics.LIMITED.labels(exc.code).inc()
            return _answer(answer_as, 429, exc.code, exc.message, {"Retry-After": str(exc.retry_after)})
        except PublishFailed:
            log.warning("otlp spans not acknowledged by kafka", extra={"workspace_id": principal.workspace_id})
            return _answer(
                answer_as,
                503,
                "unavailable",
                "the event log cannot take the spans now; nothing was accepted, export them again",
                {"Retry-After": "1"},
            )
        except KeyUnavailable as exc:
            report("ingest_http", exc, key_log)
            return _answer(
                answer_as,
                503,
                "key_unavailable",
                "the workspace's data key cannot be unwrapped by this server's KEK; export the spans again once "
                "the operator has configured the right KEK",
                {"Retry-After": "30"},
            )
        for refusal in outcome.refused:  # the acceptor counts its own refusals
            metrics.EVENTS_REFUSED.labels(refusal.code).inc()
        metrics.OTLP_SPANS.labels("accepted").inc(accepted)
        metrics.OTLP_SPANS.labels("duplicate").inc(duplicates)
        metrics.OTLP_SPANS.labels("refused").inc(len(refused))
        metrics.OTLP_SPANS.labels("ignored").inc(outcome.ignored)
        if refused:
            codes = sorted({r.code for r in refused})
            log.info(
                "otlp spans refused",
                extra={"workspace_id": principal.workspace_id, "refused": len(refused), "codes": codes},
            )
        metrics.REQUESTS.labels("200").inc()
        body = encode_response(answer_as, len(refused), error_message(refused))
        return Response(body, status_code=200, media_type=answer_as)

    return router
