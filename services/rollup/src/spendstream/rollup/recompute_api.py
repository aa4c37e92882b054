"""Re-pricing over HTTP: `POST /v1/prices/recompute` (`settings.write`) and `GET /v1/prices/recompute/{job_id}`
(`usage.read`), the caller's workspace only; and their operator twins under `/internal/v1/prices/recompute`
(X-Internal-Token; one workspace or every one), which `spendstream prices recompute --workspace` uses.
"""

# No `from __future__ import annotations` here: FastAPI evaluates the parameter annotations at definition time.

import hmac
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from spendstream.common.errors import AUTH, responses
from spendstream.common.http_auth import Access, Caller
from spendstream.common.records import StoredDay
from spendstream.rollup.api import MAX_RANGE_DAYS, _iso_day
from spendstream.rollup.recompute import Request
from spendstream.rollup.recompute_jobs import RecomputeJobs

Day = Annotated[StoredDay, BeforeValidator(_iso_day)]


class RecomputeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: Day = Field(alias="from", description="first UTC day")
    end: Day = Field(alias="to", description="last UTC day, inclusive")


class InternalRecomputeBody(RecomputeBody):
    workspace_id: str | None = Field(default=None, min_length=1, max_length=128, description="absent: every one")


class RecomputeJob(BaseModel):
    model_config = {"extra": "allow"}

    job_id: str
    state: str
    start: date
    end: date
    days_total: int
    days_done: int
    events_total: int
    events_done: int
    changed: int


def _checked(body: RecomputeBody) -> None:
    if body.start > body.end:
        raise HTTPException(422, detail={"error": "invalid_range", "message": "'from' is after 'to'"})
    if (body.end - body.start).days > MAX_RANGE_DAYS:
        raise HTTPException(422, detail={"error": "invalid_range", "message": f"at most {MAX_RANGE_DAYS} days per job"})


def _not_found() -> HTTPException:
    return HTTPException(404, detail={"error": "not_found", "message": "no re-pricing job of that id"})


def build_recompute_router(jobs: RecomputeJobs, access: Access, internal_token: SecretStr) -> APIRouter:
    router = APIRouter(tags=["prices"], responses=responses(*AUTH, 422))

    @router.post(
        "/v1/prices/recompute",
        status_code=202,
        response_model=RecomputeJob,
        summary="Re-price the workspace's computed costs of a UTC day range under the prices in force now",
        responses=responses(400),  # a body that is not JSON
    )
    async def start(
        principal: Annotated[Caller, Depends(access.require("settings.write"))], body: RecomputeBody
    ) -> dict[str, Any]:
        _checked(body)
        request = Request(body.start, body.end, principal.workspace_id, principal.actor)
        return (await jobs.submit(request)).jsonable()

    @router.get(
        "/v1/prices/recompute/{job_id}",
        response_model=RecomputeJob,
        summary="A re-pricing job's progress and result",
        responses=responses(404),
    )
    async def progress(
        principal: Annotated[Caller, Depends(access.require("usage.read"))], job_id: str
    ) -> dict[str, Any]:
        found = jobs.progress(job_id)
        if found is None or found.get("workspace_id") != principal.workspace_id:
            raise _not_found()
        return found

    def operator(token: str | None) -> None:
        expected = internal_token.get_secret_value()
        if not expected:
            raise HTTPException(404)
        if not token or not hmac.compare_digest(token.encode(), expected.encode()):
            raise HTTPException(401, detail={"error": "unauthorized", "message": "missing or wrong internal token"})

    # A dependency, so the token is checked before the body is read: no key, no schema errors.
    async def internal_operator(x_internal_token: Annotated[str | None, Header()] = None) -> None:
        operator(x_internal_token)

    @router.post(
        "/internal/v1/prices/recompute",
        status_code=202,
        include_in_schema=False,
        dependencies=[Depends(internal_operator)],
    )
    async def start_internal(body: InternalRecomputeBody) -> dict[str, Any]:
        _checked(body)
        request = Request(body.start, body.end, body.workspace_id, "operator:internal-token")
        return (await jobs.submit(request)).jsonable()

    @router.get(
        "/internal/v1/prices/recompute/{job_id}", include_in_schema=False, dependencies=[Depends(internal_operator)]
    )
    async def progress_internal(job_id: str) -> dict[str, Any]:
        found = jobs.progress(job_id)
        if found is None:
            raise _not_found()
        return found

    return router
