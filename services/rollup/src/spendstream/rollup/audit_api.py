"""The audit log over HTTP (action "audit.read": Admins and Owners, and admin keys):

GET /v1/audit?from=&to=&action=&actor_id=&outcome=&cursor=&limit=   newest first, {"records", "next_cursor"}
GET /v1/audit/export?format=json|csv (same filters)                  every matching record, oldest first, streamed
GET /v1/audit/verify                                                 {"ok", "records", "first_bad", ...}
GET /internal/v1/audit/verify?workspace_id=WS                        the operator's twin (X-Internal-Token), which
                                                                     `spendstream audit verify WORKSPACE` calls
The workspace is the caller's: no tenant route takes one as a parameter.
"""

# No `from __future__ import annotations` here: FastAPI evaluates the parameter annotations at definition time.

import asyncio
import csv
import hmac
import io
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, SecretStr

from spendstream.common.access import Action
from spendstream.common.errors import AUTH, responses
from spendstream.common.http_auth import Caller
from spendstream.common.records import AuditOutcome
from spendstream.rollup.audit_log import MAX_PAGE, SHOWN, AuditLog, Filters

# The one action of every tenant route here (access.py); app.py passes `Access.require(READ)` as `reader`.
READ: Final[Action] = "audit.read"
EXPORT_PAGE = 2000


def _moment(value: str | None, name: str) -> datetime | None:
    """An ISO time (UTC when no offset is given) or an ISO day (its midnight, UTC)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(
            422, detail={"error": "invalid_time", "message": f"'{name}' is an ISO day or time"}
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _filters(
    start: Annotated[str | None, Query(alias="from", max_length=40, description="first time (ISO), inclusive")] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40, description="end time (ISO), exclusive")] = None,
    action: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    actor_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    outcome: AuditOutcome | None = None,
) -> Filters:
    filters = Filters(_moment(start, "from"), _moment(end, "to"), action, actor_id, outcome)
    if filters.start and filters.end and filters.start >= filters.end:
        raise HTTPException(422, detail={"error": "invalid_range", "message": "'from' is not before 'to'"})
    return filters


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in SHOWN:
        value = row[name]
        if isinstance(value, datetime):
            value = value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z") if value.tzinfo is None else value
        out[name] = value
    out["seq"] = int(out["seq"])
    return out


class AuditPage(BaseModel):
    records: list[dict[str, Any]]
    next_cursor: str | None


class FirstBad(BaseModel):
    seq: int
    reason: str


class AuditVerdict(BaseModel):
    ok: bool
    records: int
    first_bad: FirstBad | None
    first_seq: int | None  # the first kept record (> 1 once retention trimmed the chain)
    last_seq: int | None  # the last record verified
    head_hash: str | None


async def _pages(log: AuditLog, workspace_id: str, filters: Filters) -> AsyncIterator[list[dict[str, Any]]]:
    pages: Iterator[list[dict[str, Any]]] = log.ascending(workspace_id, filters, page_rows=EXPORT_PAGE)
    done = object()
    while (rows := await asyncio.to_thread(next, pages, done)) is not done:
        assert isinstance(rows, list)
        yield [_shown(r) for r in rows]


async def json_stream(log: AuditLog, workspace_id: str, filters: Filters) -> AsyncIterator[bytes]:
    yield b'{"workspace_id":' + json.dumps(workspace_id).encode() + b',"records":['
    first = True
    async for rows in _pages(log, workspace_id, filters):
        for row in rows:
            yield (b"" if first else b",") + json.dumps(row, separators=(",", ":")).encode()
            first = False
    yield b"]}\n"


async def csv_stream(log: AuditLog, workspace_id: str, filters: Filters) -> AsyncIterator[bytes]:
    def lines(rows: list[list[Any]]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerows(rows)
        return buffer.getvalue().encode()

    yield lines([list(SHOWN)])
    async for rows in _pages(log, workspace_id, filters):
        yield lines([[json.dumps(r[c], sort_keys=True) if c == "detail" else r[c] for c in SHOWN] for r in rows])


def build_audit_router(log: AuditLog, reader: Any, internal_token: SecretStr) -> APIRouter:
    """`reader`: the dependency authenticating action READ (`Access.require(READ)`: keys and sessions)."""
    router = APIRouter(tags=["audit"], responses=responses(*AUTH, 422))

    @router.get("/v1/audit", response_model=AuditPage, summary="The workspace's audit records, newest first, paged")
    async def records(
        principal: Annotated[Caller, Depends(reader)],  # READ
        filters: Annotated[Filters, Depends(_filters)],
        cursor: Annotated[str | None, Query(max_length=20, pattern=r"^[0-9]+$")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> dict[str, Any]:
        before = int(cursor) if cursor is not None else None
        rows, following = await asyncio.to_thread(log.page, principal.workspace_id, filters, before, limit)
        return {"records": [_shown(r) for r in rows], "next_cursor": None if following is None else str(following)}

    @router.get(
        "/v1/audit/export",
        summary="Every matching audit record of the workspace, oldest first, streamed as JSON or CSV",
        response_class=StreamingResponse,
    )
    async def export(
        principal: Annotated[Caller, Depends(reader)],  # READ
        filters: Annotated[Filters, Depends(_filters)],
        fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    ) -> StreamingResponse:
        ws = principal.workspace_id
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        body = csv_stream(log, ws, filters) if fmt == "csv" else json_stream(log, ws, filters)
        return StreamingResponse(
            body,
            media_type="text/csv; charset=utf-8" if fmt == "csv" else "application/json",
            headers={
                "Content-Disposition": f'attachment; filename="spendstream-audit-{ws}-{stamp}.{fmt}"',
                "Cache-Control": "no-store",
            },
        )

    @router.get(
        "/v1/audit/verify",
        response_model=AuditVerdict,
        summary="Verify the workspace's audit chain: sequence, links, content and authenticated head",
    )
    async def verify(principal: Annotated[Caller, Depends(reader)]) -> dict[str, Any]:  # READ
        return (await asyncio.to_thread(log.verify, principal.workspace_id)).jsonable()

    async def operator(x_internal_token: Annotated[str | None, Header()] = None) -> None:
        expected = internal_token.get_secret_value()
        if not expected:
            raise HTTPException(404)
        if not x_internal_token or not hmac.compare_digest(x_internal_token.encode(), expected.encode()):
            raise HTTPException(401, detail={"error": "unauthorized", "message": "missing or wrong internal token"})

    @router.get(
        "/internal/v1/audit/verify",
        include_in_schema=False,
        response_model=AuditVerdict,
        dependencies=[Depends(operator)],
    )
    async def verify_internal(workspace_id: Annotated[str, Query(min_length=1, max_length=128)]) -> dict[str, Any]:
        return (await asyncio.to_thread(log.verify, workspace_id)).jsonable()

    return router
