"""rollup's read API: `GET /v1/usage` (and `/v1/usage/groupings`), `/v1/export`, `/v1/findings`, `/v1/completeness`.

Every route names its action (`usage.read`, `export.read`, `findings.read`) and answers for the caller's
workspace only (the key's or the session's): the workspace is never a parameter, so no request can name another.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the Annotated[..., Depends(auth)]
# parameters at definition time, where `auth` is a local of the router factory.

import asyncio
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, BeforeValidator, Field

from spendstream.common.errors import AUTH, responses
from spendstream.common.http_auth import Access, Caller
from spendstream.common.pricebook import PriceBook
from spendstream.rollup import export, findings
from spendstream.rollup.ledger import Ledger
from spendstream.rollup.queries import GROUPABLE, UsageQueries
from spendstream.rollup.schema import DIMENSIONS, MEASURES

MAX_RANGE_DAYS = 400
MAX_TOP = 1000
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
TOP = re.compile(r"[0-9]{1,4}")


def _iso_day(value: object) -> object:
    # pydantic would read `to=0` as 1970-01-01 (a Unix time); the document says an ISO date.
    if isinstance(value, str) and not ISO_DAY.fullmatch(value):
        raise ValueError("a day is YYYY-MM-DD")
    return value


Day = Annotated[date | None, BeforeValidator(_iso_day)]
# A dimension filter; repeat the parameter for several values (`model=a&model=b` means a or b).
Filter = Annotated[list[str], Query(default_factory=list, description="repeat for several values (any of them)")]


class UsageRow(BaseModel):
    model_config = {"extra": "allow"}

    requests: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    cache_creation_input_tokens: int
    cache_creation_1h_input_tokens: int
    cost_usd: str
    latency_ms_sum: int


class UnknownModel(BaseModel):
    provider: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int


class UsageResponse(BaseModel):
    workspace_id: str
    start: date
    end: date
    group_by: list[str]
    rows: list[UsageRow] = Field(
        description=(
            "one per group: its group_by columns and measures. With `top`, each row also has `other`: false for a "
            "kept series, true for the sum of every other series (one such row per day when grouped by day), "
            "whose series columns are null"
        )
    )
    totals: UsageRow
    unknown_models: list[UnknownModel]
    watermark: datetime | None
    top: int | None = Field(
        default=None,
        description="the `top` asked for; absent when the request named none (every row is then a group)",
    )
    other_series: int | None = Field(
        default=None,
        description="with `top`: how many series the rows with `other` true sum (0 when none was left out)",
    )


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in row.items()}


_ROW_FIELDS = tuple(UsageRow.model_fields)


def _row_out(row: dict[str, Any]) -> dict[str, Any]:
    """A rollup row as UsageRow serializes it: its measures in declared order (cost as a decimal string), then
    its group columns."""
    out = {f: row[f] for f in _ROW_FIELDS}
    out["cost_usd"] = format(out["cost_usd"], "f")
    out.update((k, v) for k, v in row.items() if k not in out)
    return out


def _zero() -> dict[str, Any]:
    return {m: (Decimal(0) if m == "cost_usd" else 0) for m in MEASURES}


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    totals = _zero()
    for row in rows:
        for m in MEASURES:
            totals[m] += row[m]
    return totals


def usage_filters(
    provider: Filter,
    model: Filter,
    feature: Filter,
    route: Filter,
    task_type: Filter,
    customer_plan: Filter,
    customer_id: Filter,
    service_tier: Filter,
) -> dict[str, list[str]]:
    """The dimension filters of /v1/usage and /v1/usage/groupings (a dependency: the same query parameters)."""
    values = {
        "provider": provider,
        "model": model,
        "feature": feature,
        "route": route,
        "task_type": task_type,
        "customer_plan": customer_plan,
        "customer_id": customer_id,
        "service_tier": service_tier,
    }
    return {k: v for k, v in values.items() if v and k in DIMENSIONS}


class Grouping(BaseModel):
    group_by: list[str]
    rows: list[UsageRow] = Field(
        description="as /v1/usage with `top` answers them for this group_by: each has `other`, the rest null series"
    )
    other_series: int = Field(description="how many series the rows with `other` true sum (0 when none)")


class GroupingsResponse(BaseModel):
    workspace_id: str
    start: date
    end: date
    top: int
    groupings: list[Grouping] = Field(description="one per `group_by`, in the request's order")
    totals: UsageRow = Field(description="the first grouping's rows summed: /v1/usage's totals for its group_by")
    unknown_models: list[UnknownModel]
    watermark: datetime | None


class Finding(BaseModel):
    kind: str
    title: str
    evidence: dict[str, Any]
    estimated_monthly_saving_usd: str


class FindingsResponse(BaseModel):
    workspace_id: str
    start: date
    end: date
    observed_days: int = 0
    findings: list[Finding]
    total_estimated_monthly_saving_usd: str


class CompletenessGaps(BaseModel):
    topic: int = Field(description="accepted - on_topic - dead_lettered: acknowledged by ingest, never read")
    raw: int = Field(description="on_topic - erased - stored_raw: read, not stored")
    rollup: int = Field(description="stored_raw - in_rollup: stored, not in the daily rollup yet")


class CompletenessDay(BaseModel):
    day: date
    accepted: int = Field(description="events ingest accepted (202s and raw-intake acceptances), each once")
    on_topic: int = Field(description="distinct events rollup read from usage.events.v1")
    dead_lettered: int = Field(description="events of envelopes rollup could not read")
    erased: int = Field(description="events of erased customers")
    stored_raw: int = Field(description="events in the raw table (deduplicated)")
    in_rollup: int = Field(description="requests in the daily rollup")
    gaps: CompletenessGaps


class CompletenessResponse(BaseModel):
    workspace_id: str
    start: date
    end: date
    ledger_since: datetime | None = Field(
        description="when the ledger started: events ingested before it have no tally, so `accepted` omits them"
    )
    days: list[CompletenessDay]


def _range(start: date | None, end: date | None) -> tuple[date, date]:
    end = end or datetime.now(UTC).date()
    start = start or end - timedelta(days=30)
    if start > end:
        raise HTTPException(422, detail={"error": "invalid_range", "message": "'from' is after 'to'"})
    if (end - start).days > MAX_RANGE_DAYS:
        raise HTTPException(
            422, detail={"error": "invalid_range", "message": f"at most {MAX_RANGE_DAYS} days per query"}
        )
    return start, end


def _top(value: str | None) -> int | None:
    """The `top` parameter as a number of series; None when absent. Parsed here, not by pydantic, so that a wrong
    value answers one precise message (`top=0`, `top=1.5`, `top=abc` and `top=5000` alike)."""
    if value is None:
        return None
    if not TOP.fullmatch(value) or not 1 <= int(value) <= MAX_TOP:
        raise HTTPException(
            422, detail={"error": "invalid_top", "message": f"top is a whole number of series from 1 to {MAX_TOP}"}
        )
    return int(value)


MAX_GROUPINGS = 8


def _groupings(values: list[str]) -> list[list[str]]:
    """The `group_by` parameters of /v1/usage/groupings, each a list of columns; 422 with a precise message."""
    sets = [[g.strip() for g in value.split(",") if g.strip()] for value in values]
    if not 1 <= len(sets) <= MAX_GROUPINGS or any(not ks for ks in sets):
        raise HTTPException(
            422,
            detail={
                "error": "invalid_group_by",
                "message": f"from 1 to {MAX_GROUPINGS} group_by parameters, each naming at least one column",
            },
        )
    if any(g not in GROUPABLE for ks in sets for g in ks):
        raise HTTPException(
            422, detail={"error": "invalid_group_by", "message": f"group_by accepts {', '.join(GROUPABLE)}"}
        )
    if len({frozenset(ks) for ks in sets}) != len(sets):
        raise HTTPException(422, detail={"error": "invalid_group_by", "message": "each grouping at most once"})
    return sets


def build_router(queries: UsageQueries, access: Access, prices: PriceBook, ledger: Ledger) -> APIRouter:
    router = APIRouter(tags=["usage"], responses=responses(*AUTH, 422))

    @router.get(
        "/v1/usage",
        response_model=UsageResponse,
        summary="Spend and tokens over a UTC day range, grouped and filtered by rollup dimensions",
    )
    async def usage(
        principal: Annotated[Caller, Depends(access.require("usage.read"))],
        filters: Annotated[dict[str, list[str]], Depends(usage_filters)],
        start: Annotated[Day, Query(alias="from", description="first UTC day (default: 30 days ago)")] = None,
        end: Annotated[Day, Query(alias="to", description="last UTC day, inclusive (default: today)")] = None,
        group_by: Annotated[str, Query(description=f"comma-separated: {', '.join(GROUPABLE)}")] = "",
        top: Annotated[
            str | None,
            Query(
                description=(
                    f"1..{MAX_TOP}: keep the N costliest series over the range (a series: the values of every "
                    "group_by dimension but `day`; ties by those values, ascending) and sum every other series "
                    "into one row per day whose `other` is true and whose series dimensions are null. With `top`, "
                    "every row carries `other` and the answer `other_series` (how many series the rest sums); "
                    "totals are those of every series. Without a series dimension `top` changes no row"
                ),
                json_schema_extra={"pattern": "^[0-9]{1,4}$"},
            ),
        ] = None,
    ) -> JSONResponse:
        start, end = _range(start, end)
        top_n = _top(top)
        groups = [g.strip() for g in group_by.split(",") if g.strip()]
        unknown = [g for g in groups if g not in GROUPABLE]
        if unknown:
            raise HTTPException(
                422, detail={"error": "invalid_group_by", "message": f"group_by accepts {', '.join(GROUPABLE)}"}
            )
        ws = principal.workspace_id
        other_series: int | None = None
        if top_n is None:
            rows, (unknown_models, watermark) = await asyncio.gather(
                asyncio.to_thread(queries.usage, ws, start, end, groups, filters),
                asyncio.to_thread(queries.context, ws, start, end),
            )
        else:
            (rows, other_series), (unknown_models, watermark) = await asyncio.gather(
                asyncio.to_thread(queries.usage_top, ws, start, end, groups, filters, top_n),
                asyncio.to_thread(queries.context, ws, start, end),
            )
        totals = _totals(rows)
        # The envelope goes through the response model; the rows, thousands of plain str/int dicts, are laid out
        # as the model would lay them out (declared measures, then the group columns) without validating each.
        answer = UsageResponse(
            workspace_id=ws,
            start=start,
            end=end,
            group_by=groups,
            rows=[],
            totals=UsageRow.model_validate(_jsonable(totals)),
            unknown_models=[UnknownModel.model_validate(u) for u in unknown_models],
            watermark=watermark,
            top=top_n,
            other_series=other_series,
        ).model_dump(mode="json")
        if top_n is None:
            del answer["top"], answer["other_series"]
        answer["rows"] = [_row_out(r) for r in rows]
        return JSONResponse(answer)

    @router.get(
        "/v1/usage/groupings",
        response_model=GroupingsResponse,
        summary="Several groupings of /v1/usage?top= over one range and filters, in one scan",
    )
    async def usage_groupings(
        principal: Annotated[Caller, Depends(access.require("usage.read"))],
        group_by: Annotated[
            list[str],
            Query(
                default_factory=list,
                description=(
                    f"repeat, 1 to {MAX_GROUPINGS} times, each comma-separated ({', '.join(GROUPABLE)}): one grouping "
                    "each, answered as /v1/usage answers it with the same top"
                ),
            ),
        ],
        filters: Annotated[dict[str, list[str]], Depends(usage_filters)],
        top: Annotated[
            str,
            Query(
                description=f"1..{MAX_TOP}: the series each grouping keeps, as /v1/usage's `top`",
                json_schema_extra={"pattern": "^[0-9]{1,4}$"},
            ),
        ],
        start: Annotated[Day, Query(alias="from", description="first UTC day (default: 30 days ago)")] = None,
        end: Annotated[Day, Query(alias="to", description="last UTC day, inclusive (default: today)")] = None,
    ) -> JSONResponse:
        start, end = _range(start, end)
        top_n = _top(top)
        assert top_n is not None  # a required parameter
        sets = _groupings(group_by)
        ws = principal.workspace_id
        answers, (unknown_models, watermark) = await asyncio.gather(
            asyncio.to_thread(queries.usage_sets, ws, start, end, sets, filters, top_n),
            asyncio.to_thread(queries.context, ws, start, end),
        )
        totals = _totals(answers[0][0])
        # As in /v1/usage: the envelope through the model, the rows laid out as UsageRow lays them out.
        answer = GroupingsResponse(
            workspace_id=ws,
            start=start,
            end=end,
            top=top_n,
            groupings=[],
            totals=UsageRow.model_validate(_jsonable(totals)),
            unknown_models=[UnknownModel.model_validate(u) for u in unknown_models],
            watermark=watermark,
        ).model_dump(mode="json")
        answer["groupings"] = [
            {
                "group_by": ks,
                "rows": [_row_out(r) for r in rows],
                "other_series": other_series,
            }
            for ks, (rows, other_series) in zip(sets, answers, strict=True)
        ]
        return JSONResponse(answer)

    @router.get(
        "/v1/export",
        summary="Every stored event and daily rollup row of the workspace, streamed",
        response_class=StreamingResponse,
    )
    async def export_data(
        principal: Annotated[Caller, Depends(access.require("export.read"))],
        fmt: Annotated[export.Format, Query(alias="format")] = "json",
    ) -> StreamingResponse:
        ws = principal.workspace_id
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
        return StreamingResponse(
            export.stream(queries, ws, fmt),
            media_type=media,
            headers={
                "Content-Disposition": f'attachment; filename="spendstream-{ws}-{stamp}.{fmt}"',
                "Cache-Control": "no-store",
            },
        )

    @router.get(
        "/v1/findings",
        response_model=FindingsResponse,
        summary="Waste findings over the last 30 days, each with evidence and a monthly saving in USD",
    )
    async def waste_findings(principal: Annotated[Caller, Depends(access.require("findings.read"))]) -> dict[str, Any]:
        today = datetime.now(UTC).date()
        _, table = prices.table_at(today)  # savings are estimated at today's list prices
        return await asyncio.to_thread(findings.find, queries, table, principal.workspace_id, today)

    @router.get(
        "/v1/completeness",
        response_model=CompletenessResponse,
        summary="The completeness ledger: per UTC day, the events each hop saw, from ingest's answer to the rollup",
    )
    async def completeness(
        principal: Annotated[Caller, Depends(access.require("usage.read"))],
        start: Annotated[Day, Query(alias="from", description="first UTC day (default: 30 days ago)")] = None,
        end: Annotated[Day, Query(alias="to", description="last UTC day, inclusive (default: today)")] = None,
    ) -> dict[str, Any]:
        start, end = _range(start, end)
        ws = principal.workspace_id
        found = await asyncio.to_thread(ledger.days, ws, start, end)
        since = await asyncio.to_thread(ledger.since)
        days = [
            {**{k: getattr(d, k) for k in CompletenessDay.model_fields if k != "gaps"}, "gaps": d.gaps()}
            for d in found.values()
        ]
        return {"workspace_id": ws, "start": start, "end": end, "ledger_since": since, "days": days}

    return router
