"""ingest's HTTP surface: `POST /v1/events`."""

# No `from __future__ import annotations` here: FastAPI must evaluate the Annotated[..., Depends(auth)]
# parameters at definition time, where `auth` is a local of the router factory.

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import msgspec
import uuid_utils
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from spendstream.common.errors import AUTH, ErrorBody, responses
from spendstream.common.events import RequestBatch
from spendstream.common.http_auth import Caller
from spendstream.common.key_backoff import LogPace, report
from spendstream.common.tenants import KeyUnavailable
from spendstream.ingest import metrics
from spendstream.ingest.batches import BatchAcceptor, PublishFailed
from spendstream.ingest.body import BodyError, parse_batch, read_body
from spendstream.ingest.fastpath import CheckedBatch
from spendstream.ingest.limits import LimitExceeded
from spendstream.ingest.settings import IngestSettings
from spendstream.ingest.workspaces import WorkspaceDirectory

log = logging.getLogger(__name__)


class RejectedEvent(BaseModel):
    index: int
    field: str
    code: str
    message: str


class IngestResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[RejectedEvent]


def events_request_schema() -> dict[str, Any]:
    """The request body's JSON schema (events.RequestBatch's), self-contained: the handler reads the body itself
    (gzip, per-event errors), so FastAPI never sees the type and would not register it under components."""
    schema = msgspec.json.schema(RequestBatch)
    defs: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    body: dict[str, Any] = inline(schema)
    return body


def _new_id(index: int) -> str:
    return str(uuid_utils.uuid7())  # as validate_event names an event sent without an event_id


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    metrics.REQUESTS.labels(str(status)).inc()
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


class CountedRoute(APIRoute):
    """Counts in the requests metric the answers that never reach the handler: 401 and 403 from the key check
    (a client with a revoked key is exactly what an SRE wants to see in the request rates)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def counted(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                metrics.REQUESTS.labels(str(exc.status_code)).inc()
                raise

        return counted


def build_router(
    settings: IngestSettings, acceptor: BatchAcceptor, workspaces: WorkspaceDirectory, auth: Any
) -> APIRouter:
    router = APIRouter(tags=["ingest"], route_class=CountedRoute)
    errors = responses(
        *AUTH,
        400,
        413,
        415,
        503,
        s429="rate limited, over the monthly quota, or too many failed authentications; see `Retry-After`",
        s503="nothing was accepted, retry with the same event_ids: `unavailable` (the event log cannot take the "
        "batch now) or `key_unavailable` (the workspace's data key cannot be unwrapped by this server's KEK, an "
        "operator's error; other workspaces are unaffected)",
    )
    key_log = LogPace()  # a wrong KEK fails every request of the workspace: one line a minute says it
    errors[422] = {
        "model": ErrorBody | IngestResponse,
        "description": "no valid event in the batch (per-event reasons), or a malformed batch",
    }

    @router.post(
        "/v1/events",
        status_code=202,
        response_model=IngestResponse,
        responses=errors,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": events_request_schema()}}}
        },
        summary="Send a batch of usage events (metadata only)",
    )
    async def post_events(request: Request, principal: Annotated[Caller, Depends(auth)]) -> JSONResponse:
        try:
            raw = await read_body(request, settings.max_body_bytes, settings.max_inflated_bytes)
        except BodyError as exc:
            return _error(exc.status, exc.code, exc.message)
        # A batch whose every event is valid is taken as it is; any other goes the reference way below, which
        # answers each refusal (fastpath.py says why both exist).
        events: list[Any] | CheckedBatch | None = acceptor.check_fast(raw, _new_id)
        if events is None:
            try:
                events = parse_batch(raw)
            except BodyError as exc:
                return _error(exc.status, exc.code, exc.message)
        workspace = workspaces.get(principal.workspace_id)
        quota = workspace.monthly_event_quota if workspace is not None else -1
        try:
            result = await acceptor.accept(
                principal.workspace_id, events, "http", quota=quota, traceparent=request.headers.get("traceparent")
            )
        except LimitExceeded as exc:
            metrics.LIMITED.labels(exc.code).inc()
            return _error(429, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after)})
        except PublishFailed:
            log.warning("batch not acknowledged by kafka", extra={"workspace_id": principal.workspace_id})
            return _error(
                503,
                "unavailable",
                "the event log cannot take the batch now; nothing was accepted, retry with the same event_ids",
                headers={"Retry-After": "1"},
            )
        except KeyUnavailable as exc:
            report("ingest_http", exc, key_log)
            return _error(
                503,
                "key_unavailable",
                "the workspace's data key cannot be unwrapped by this server's KEK; nothing was accepted, retry "
                "with the same event_ids once the operator has configured the right KEK",
                headers={"Retry-After": "30"},
            )
        status = 202 if result.accepted or result.duplicates else 422
        metrics.REQUESTS.labels(str(status)).inc()
        return JSONResponse(result.as_dict(), status_code=status)

    return router
