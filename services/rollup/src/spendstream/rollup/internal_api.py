"""Service-to-service reads of rollup's figures: `GET /internal/v1/spend` (alerts reconciles its counters).

Not for tenants: authenticated by the shared `SPENDSTREAM_INTERNAL_TOKEN` (header `X-Internal-Token`), and
disabled (404) while that token is empty.
"""

# No `from __future__ import annotations` here: FastAPI evaluates the parameter annotations at definition time.

import asyncio
import hmac
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query
from pydantic import SecretStr

from spendstream.rollup.queries import UsageQueries

MAX_DAYS = 62


def build_internal_router(queries: UsageQueries, token: SecretStr) -> APIRouter:
    router = APIRouter(tags=["internal"], include_in_schema=False)

    @router.get("/internal/v1/spend")
    async def spend(
        x_internal_token: Annotated[str | None, Header()] = None,
        workspace_id: Annotated[str, Query(min_length=1, max_length=128)] = "",
        start: Annotated[date | None, Query(alias="from")] = None,
        end: Annotated[date | None, Query(alias="to")] = None,
        tag: Literal["feature", "customer_id"] | None = None,
        value: Annotated[str | None, Query(max_length=120)] = None,
    ) -> dict[str, Any]:
        """Cost per UTC day of one workspace (optionally one feature or customer) over [from, to]."""
        expected = token.get_secret_value()
        if not expected:
            raise HTTPException(404)
        if not x_internal_token or not hmac.compare_digest(x_internal_token.encode(), expected.encode()):
            raise HTTPException(401, detail={"error": "unauthorized", "message": "missing or wrong internal token"})
        if start is None or end is None or start > end or (end - start).days > MAX_DAYS or not workspace_id:
            raise HTTPException(
                422, detail={"error": "invalid_range", "message": f"from <= to, at most {MAX_DAYS} days apart"}
            )
        if (tag is None) != (value is None):
            raise HTTPException(422, detail={"error": "invalid_scope", "message": "tag and value go together"})
        filters = {tag: value} if tag is not None and value is not None else {}
        rows = await asyncio.to_thread(queries.usage, workspace_id, start, end, ["day"], filters)
        days = {row["day"]: format(Decimal(row["cost_usd"]), "f") for row in rows}
        return {"workspace_id": workspace_id, "days": days}

    return router
