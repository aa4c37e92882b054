"""rollup's read API: `GET /v1/usage`. A read key sees only its own workspace."""

# No `from __future__ import annotations` here: FastAPI must evaluate the Annotated[..., Depends(auth)]
# parameters at definition time, where `auth` is a local of the router factory.

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from spendstream.common.tenants import Principal
from spendstream.rollup.schema import DIMENSIONS, MEASURES
from spendstream.rollup.store import GROUPABLE, Store

MAX_RANGE_DAYS = 400


class UsageRow(BaseModel):
    model_config = {"extra": "allow"}

    requests: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    cost_usd: str
    latency_ms_sum: int


class UnknownModel(BaseModel):
    provider: str
    model: str
    requests: int


class UsageResponse(BaseModel):
    workspace_id: str
    start: date
    end: date
    group_by: list[str]
    rows: list[UsageRow]
    totals: UsageRow
    unknown_models: list[UnknownModel]
    watermark: datetime | None


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in row.items()}


def _zero() -> dict[str, Any]:
    return {m: (Decimal(0) if m == "cost_usd" else 0) for m in MEASURES}


def build_router(store: Store, auth: Any) -> APIRouter:
    router = APIRouter(tags=["usage"])

    @router.get("/v1/usage", response_model=UsageResponse,
                summary="Spend and tokens over a UTC day range, grouped and filtered by rollup dimensions")
    async def usage(
        principal: Annotated[Principal, Depends(auth)],
        start: Annotated[date | None, Query(alias="from", description="first UTC day (default: 30 days ago)")]
        = None,
        end: Annotated[date | None, Query(alias="to", description="last UTC day, inclusive (default: today)")]
        = None,
        group_by: Annotated[str, Query(description=f"comma-separated: {', '.join(GROUPABLE)}")] = "",
        provider: str | None = None, model: str | None = None, feature: str | None = None,
        route: str | None = None, task_type: str | None = None, customer_plan: str | None = None,
        customer_id: str | None = None,
    ) -> dict[str, Any]:
        today = datetime.now(UTC).date()
        end = end or today
        start = start or end - timedelta(days=30)
        if start > end:
            raise HTTPException(422, detail={"error": "invalid_range", "message": "'from' is after 'to'"})
        if (end - start).days > MAX_RANGE_DAYS:
            raise HTTPException(422, detail={"error": "invalid_range",
                                             "message": f"at most {MAX_RANGE_DAYS} days per query"})
        groups = [g.strip() for g in group_by.split(",") if g.strip()]
        unknown = [g for g in groups if g not in GROUPABLE]
        if unknown:
            raise HTTPException(422, detail={"error": "invalid_group_by",
                                             "message": f"group_by accepts {', '.join(GROUPABLE)}"})
        values = {"provider": provider, "model": model, "feature": feature, "route": route,
                  "task_type": task_type, "customer_plan": customer_plan, "customer_id": customer_id}
        filters = {k: v for k, v in values.items() if v is not None and k in DIMENSIONS}
        ws = principal.workspace_id
        rows = await asyncio.to_thread(store.usage, ws, start, end, groups, filters)
        totals = _zero()
        for row in rows:
            for m in MEASURES:
                totals[m] += row[m]
        unknown_models = await asyncio.to_thread(store.unknown_models, ws, start, end)
        watermark = await asyncio.to_thread(store.watermark, ws)
        return {"workspace_id": ws, "start": start, "end": end, "group_by": groups,
                "rows": [_jsonable(r) for r in rows], "totals": _jsonable(totals),
                "unknown_models": unknown_models, "watermark": watermark}

    return router
