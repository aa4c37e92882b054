"""`GET /v1/reconciliation` (`usage.read`): metered figures beside the provider's (reconciliation.py)."""

# No `from __future__ import annotations`: FastAPI evaluates the Annotated[..., Depends(auth)] parameters.

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from spendstream.common.errors import AUTH, responses
from spendstream.common.http_auth import Access, Caller
from spendstream.rollup.api import Day, _range
from spendstream.rollup.reconciliation import GROUPS, Reconciliation, Scope


class Figures(BaseModel):
    input_tokens: int | None
    cached_input_tokens: int | None
    cache_creation_input_tokens: int | None
    cache_creation_1h_input_tokens: int | None
    output_tokens: int | None
    requests: int | None = Field(description="None where the provider counts no requests (Anthropic)")
    cost: str | None = Field(description="decimal text; metered in USD, the provider's in provider_currency")


class Percentages(BaseModel):
    input_tokens: str | None
    cached_input_tokens: str | None
    cache_creation_input_tokens: str | None
    cache_creation_1h_input_tokens: str | None
    output_tokens: str | None
    requests: str | None
    cost: str | None


class ReconciliationRow(BaseModel):
    model_config = {"extra": "allow"}  # the group's keys: day, provider, model

    metered: Figures
    reported: Figures = Field(description="what the provider reported for the group")
    difference: Figures = Field(description="metered - reported; None where the provider reports nothing")
    difference_pct: Percentages = Field(description="difference / reported x 100, two decimals")
    provider_currency: str | None
    settled: bool = Field(description="the provider's figures were read after the settle delay had passed")


class ReconciliationResponse(BaseModel):
    workspace_id: str
    start: date
    end: date
    group_by: list[str]
    rows: list[ReconciliationRow]


def build_reconciliation_router(
    reconciliation: Reconciliation, access: Access, narrow: Callable[[str], dict[str, Scope]]
) -> APIRouter:
    router = APIRouter(tags=["usage"], responses=responses(*AUTH, 422))

    @router.get(
        "/v1/reconciliation",
        response_model=ReconciliationResponse,
        summary="Metered tokens, requests and cost beside the provider's, with the difference",
    )
    async def reconcile(
        principal: Annotated[Caller, Depends(access.require("usage.read"))],
        start: Annotated[Day, Query(alias="from", description="first UTC day (default: 30 days ago)")] = None,
        end: Annotated[Day, Query(alias="to", description="last UTC day, inclusive (default: today)")] = None,
        group_by: Annotated[str, Query(description="comma-separated: day, provider, model")] = "day,provider,model",
    ) -> dict[str, Any]:
        start, end = _range(start, end)
        groups = [g.strip() for g in group_by.split(",") if g.strip()]
        if any(g not in GROUPS for g in groups):
            raise HTTPException(
                422, detail={"error": "invalid_group_by", "message": f"group_by accepts {', '.join(GROUPS)}"}
            )
        ws = principal.workspace_id
        rows = await asyncio.to_thread(reconciliation.rows, ws, start, end, groups, narrow(ws), datetime.now(UTC))
        return {"workspace_id": ws, "start": start, "end": end, "group_by": groups, "rows": rows}

    return router
