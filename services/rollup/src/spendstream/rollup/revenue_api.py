"""rollup's revenue and margin API: revenue records, plan prices, currency rates, the Stripe endpoint and webhook,
and `GET /v1/margin`.

Changes need `settings.write`, reads `usage.read`, and answer for the caller's workspace only. The Stripe
webhook takes no key: Stripe's signature over the body, with the workspace's endpoint secret, authenticates it.
"""

# No `from __future__ import annotations`: FastAPI evaluates the Annotated[..., Depends(auth)] parameters.

import asyncio
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from spendstream.common.errors import AUTH, responses
from spendstream.common.http_auth import Access, Caller
from spendstream.rollup.margin import MarginQueries, MissingRate
from spendstream.rollup.revenue import (
    MAX_RECORDS,
    MONTH_PATTERN,
    CurrencyRate,
    PlanPrice,
    RecordError,
    RevenueStore,
    month_end,
    month_start,
    parse_csv,
    validate_batch,
)
from spendstream.rollup.stripe_webhook import Refused, StripeEndpoints, StripeWebhook

MAX_MONTHS = 24
MAX_CSV_CHARS = 4 * 1024 * 1024
# Stripe's events are a few KiB; an unauthenticated route reads no more than this before verifying.
MAX_STRIPE_BYTES = 1024 * 1024
MonthParam = Annotated[str, StringConstraints(pattern=MONTH_PATTERN)]


class RevenueBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_RECORDS,
        description="each a RevenueRecord; invalid ones are refused one by one (`rejected`), the others stored",
    )


class RevenueAnswer(BaseModel):
    accepted: int = Field(description="records stored (a known source id replaced its earlier record)")
    rejected: list[RecordError]


class CsvImport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csv: Annotated[str, StringConstraints(min_length=1, max_length=MAX_CSV_CHARS)] = Field(
        description="the file: a header (source,source_id,customer_id,amount,currency, month or "
        "period_start,period_end, optional customer_plan) and one record per line"
    )


class CsvAnswer(BaseModel):
    imported: int


class StoredRevenue(BaseModel):
    source: str
    source_id: str
    customer_id: str
    customer_plan: str
    amount: str
    currency: str
    period_start: date
    period_end: date


class RevenueListing(BaseModel):
    workspace_id: str
    records: list[StoredRevenue]
    plans: list[PlanPrice]
    rates: list[CurrencyRate]


class Plans(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plans: list[PlanPrice] = Field(min_length=1, max_length=1000)


class Rates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rates: list[CurrencyRate] = Field(min_length=1, max_length=1000)


class Saved(BaseModel):
    saved: int


class StripeEndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signing_secret: Annotated[str, StringConstraints(pattern=r"^whsec_[A-Za-z0-9+/=_-]{8,200}$")] = Field(
        description="the endpoint's signing secret from Stripe's dashboard (`whsec_…`); stored sealed, never shown"
    )
    customer_metadata_key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,40}$")] = Field(
        default="spendstream_customer_id",
        description="the metadata key on the Stripe customer/invoice holding the customer_id your events carry",
    )


class StripeEndpointOut(BaseModel):
    webhook_path: str
    customer_metadata_key: str
    events: list[str]


class StripeAnswer(BaseModel):
    status: Literal["recorded", "duplicate", "ignored"]
    reason: str | None = None
    source: str | None = None
    source_id: str | None = None


class FeatureShare(BaseModel):
    feature: str
    ai_cost_usd: str
    share_pct: str | None


class MarginGroup(BaseModel):
    key: str = Field(description="the customer_id or customer_plan ('' for usage without one)")
    revenue_usd: str
    ai_cost_usd: str
    gross_margin_usd: str
    margin_pct: str | None = Field(description="gross margin / revenue, in percent; null without revenue")
    cost_exceeds_revenue: bool
    cost_by_feature: list[FeatureShare]


class MarginTotal(BaseModel):
    revenue_usd: str
    ai_cost_usd: str
    gross_margin_usd: str
    margin_pct: str | None
    cost_exceeds_revenue: bool


class MarginMonth(BaseModel):
    month: str
    groups: list[MarginGroup] = Field(description="groups whose AI cost exceeds their revenue first")
    total: MarginTotal


class MarginResponse(BaseModel):
    workspace_id: str
    start: str
    end: str
    group_by: str
    months: list[MarginMonth]
    total: MarginTotal


def _months(start: str | None, end: str | None) -> tuple[date, date]:
    today = datetime.now(UTC).date().replace(day=1)
    last = month_start(end) if end else today
    first = month_start(start) if start else last
    if first > last:
        raise HTTPException(422, detail={"error": "invalid_range", "message": "'from' is after 'to'"})
    if (last.year - first.year) * 12 + last.month - first.month >= MAX_MONTHS:
        raise HTTPException(422, detail={"error": "invalid_range", "message": f"at most {MAX_MONTHS} months per query"})
    return first, last


def build_revenue_router(
    store: RevenueStore,
    margin: MarginQueries,
    endpoints: StripeEndpoints,
    webhook: StripeWebhook,
    access: Access,
    lock: asyncio.Lock,
) -> APIRouter:
    router = APIRouter(tags=["revenue"])

    @router.post(
        "/v1/revenue",
        response_model=RevenueAnswer,
        summary="Store revenue records (a known source and source_id replaces its record); per-record errors",
        responses=responses(*AUTH, 400, 422),
    )
    async def post_revenue(
        principal: Annotated[Caller, Depends(access.require("settings.write"))], body: RevenueBatch
    ) -> dict[str, Any]:
        good, errors = validate_batch(body.records)
        async with lock:  # erasure deletes under the same lock
            await asyncio.to_thread(store.write, principal.workspace_id, good)
        return {"accepted": len(good), "rejected": errors}

    @router.post(
        "/v1/revenue/import",
        response_model=CsvAnswer,
        summary="Import a CSV file of revenue records: all of it, or nothing (every line error listed)",
        responses=responses(
            *AUTH, 400, 422, s422="the file has errors (`details`: `line.<n>.<column>`); nothing stored"
        ),
    )
    async def import_csv(
        principal: Annotated[Caller, Depends(access.require("settings.write"))], body: CsvImport
    ) -> dict[str, Any]:
        good, errors = parse_csv(body.csv)
        if errors or not good:
            details = [{"field": f"line.{e.line}.{e.field}", "code": e.code} for e in errors] or [
                {"field": "csv", "code": "empty"}
            ]
            raise HTTPException(
                422,
                detail={
                    "error": "invalid_csv",
                    "message": f"{len(errors) or 1} problem(s) in the file; nothing was imported",
                    "details": details,
                },
            )
        async with lock:
            await asyncio.to_thread(store.write, principal.workspace_id, good)
        return {"imported": len(good)}

    @router.get(
        "/v1/revenue",
        response_model=RevenueListing,
        summary="The workspace's revenue records (corrections applied), plan prices and currency rates",
        responses=responses(*AUTH, 422),
    )
    async def list_revenue(
        principal: Annotated[Caller, Depends(access.require("usage.read"))],
        start: Annotated[MonthParam | None, Query(alias="from", description="first month (YYYY-MM)")] = None,
        end: Annotated[MonthParam | None, Query(alias="to", description="last month (YYYY-MM)")] = None,
    ) -> dict[str, Any]:
        ws = principal.workspace_id
        first, last = _months(start, end)
        records = await asyncio.to_thread(store.records, ws, first, month_end(last))
        plans = await asyncio.to_thread(store.plans, ws)
        rates = await asyncio.to_thread(store.rates, ws)
        return {
            "workspace_id": ws,
            "records": [{**r, "amount": format(r["amount"], "f")} for r in records],
            "plans": [{"plan": p, "monthly_amount": a, "currency": c} for p, (a, c) in sorted(plans.items())],
            "rates": [{"month": m, "currency": c, "usd_per_unit": r} for (m, c), r in sorted(rates.items())],
        }

    @router.put(
        "/v1/revenue/plans",
        response_model=Saved,
        summary="Set plan prices: the monthly amount of customers billed by plan without a revenue record",
        responses=responses(*AUTH, 400, 422),
    )
    async def set_plans(
        principal: Annotated[Caller, Depends(access.require("settings.write"))], body: Plans
    ) -> dict[str, Any]:
        async with lock:
            await asyncio.to_thread(store.set_plans, principal.workspace_id, body.plans)
        return {"saved": len(body.plans)}

    @router.put(
        "/v1/revenue/rates",
        response_model=Saved,
        summary="Set monthly currency rates (USD per unit); amounts in a currency without a rate are refused",
        responses=responses(*AUTH, 400, 422),
    )
    async def set_rates(
        principal: Annotated[Caller, Depends(access.require("settings.write"))], body: Rates
    ) -> dict[str, Any]:
        async with lock:
            await asyncio.to_thread(store.set_rates, principal.workspace_id, body.rates)
        return {"saved": len(body.rates)}

    @router.put(
        "/v1/stripe/endpoint",
        response_model=StripeEndpointOut,
        summary="Set the workspace's Stripe webhook signing secret (sealed, never shown again) and metadata key",
        responses=responses(*AUTH, 400, 409, 422, s409="the workspace has no data key (erased)"),
    )
    async def set_stripe(
        principal: Annotated[Caller, Depends(access.require("settings.write"))], body: StripeEndpointIn
    ) -> dict[str, Any]:
        ws = principal.workspace_id
        if not await endpoints.set(ws, body.signing_secret, body.customer_metadata_key):
            raise HTTPException(409, detail={"error": "no_data_key", "message": "the workspace has no data key"})
        return {
            "webhook_path": f"/v1/stripe/webhook/{ws}",
            "customer_metadata_key": body.customer_metadata_key,
            "events": ["invoice.paid", "charge.refunded", "credit_note.created"],
        }

    @router.post(
        "/v1/stripe/webhook/{workspace_id}",
        response_model=StripeAnswer,
        summary="Stripe's webhook: signed events (invoice.paid, refunds, credit notes) become revenue records",
        description="No API key: the `Stripe-Signature` header, verified with the workspace's endpoint secret, "
        "authenticates the request. A refused request stores nothing.",
        responses=responses(
            400,
            401,
            413,
            422,
            s400="the body is not a Stripe event",
            s401="`invalid_signature`: no signature, one that does not verify with the workspace's endpoint "
            "secret, a timestamp outside the tolerance, or no endpoint set for the workspace",
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object", "description": "a Stripe event"}}},
            }
        },
    )
    async def stripe_webhook(
        request: Request,
        workspace_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
        stripe_signature: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        payload = bytearray()
        async for chunk in request.stream():
            payload += chunk
            if len(payload) > MAX_STRIPE_BYTES:
                raise HTTPException(413, detail={"error": "too_large", "message": "a Stripe event is at most 1 MiB"})
        try:
            return await webhook.receive(workspace_id, bytes(payload), stripe_signature)
        except Refused as exc:
            raise HTTPException(exc.status, detail={"error": exc.error, "message": exc.message}) from None

    @router.get(
        "/v1/margin",
        response_model=MarginResponse,
        summary="Revenue, AI cost, gross margin and margin % per customer or plan, month by month; losses first",
        responses=responses(*AUTH, 422, s422="schema violation, a bad range, or a currency without a rate"),
    )
    async def get_margin(
        principal: Annotated[Caller, Depends(access.require("usage.read"))],
        start: Annotated[MonthParam | None, Query(alias="from", description="first month (YYYY-MM)")] = None,
        end: Annotated[MonthParam | None, Query(alias="to", description="last month (YYYY-MM), inclusive")] = None,
        group_by: Literal["customer_id", "customer_plan"] = "customer_id",
    ) -> dict[str, Any]:
        first, last = _months(start, end)
        ws = principal.workspace_id
        try:
            body = await asyncio.to_thread(margin.margin, ws, first, last, group_by)
        except MissingRate as exc:
            raise HTTPException(
                422, detail={"error": "missing_rate", "message": str(exc), "field": "currency", "code": "no_rate"}
            ) from None
        return {
            "workspace_id": ws,
            "start": f"{first:%Y-%m}",
            "end": f"{last:%Y-%m}",
            "group_by": group_by,
            **body,
        }

    return router
