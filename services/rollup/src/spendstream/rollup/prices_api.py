"""rollup's price API (reads `usage.read`, changes `settings.write`): the price versions, held tables and their
approval, and tenant rates.

  GET    /v1/prices/versions                  every version and the one in force today (usage.read)
  GET    /v1/prices/held                      versions waiting for approval      (price admins)
  POST   /v1/prices/held/{version_id}/approve make a held version active         (price admins)
  GET    /v1/prices/rates                     the key's workspace's rates
  PUT    /v1/prices/rates/{rate_id}           set (create or replace) one of its rates
  DELETE /v1/prices/rates/{rate_id}           delete one of its rates

A price table is every tenant's, so seeing and approving held ones takes a caller of a workspace named in
`SPENDSTREAM_PRICE_ADMIN_WORKSPACES`. Rates are the caller's own workspace's: the workspace is never a parameter.
Each change is published to its compacted topic and answered once this replica's book holds it.
"""

# No `from __future__ import annotations` here: FastAPI evaluates the parameter annotations at definition time.

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spendstream.common.errors import AUTH, responses
from spendstream.common.http_auth import Access, Caller
from spendstream.common.price_holds import approved
from spendstream.common.price_replica import PricePublisher, ReplayedPriceBook
from spendstream.common.pricebook import PriceVersion, RateKind, TenantRate, TokenRate

RateId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
VersionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class RateRequest(BaseModel):
    """A negotiated rate: `kind` fixed (per-token `input`, `output`, optional `cached_input`, `cache_write`;
    USD per token) or discount / markup (`percent` of the table's price), for `provider` (any when absent) and
    models matching the glob `model`, from the UTC day `effective_from`."""

    model_config = ConfigDict(extra="forbid")

    provider: str | None = Field(default=None, min_length=1, max_length=64)
    model: str = Field(default="*", min_length=1, max_length=256)
    effective_from: date
    kind: RateKind
    percent: Decimal | None = Field(default=None, gt=0, le=1000, decimal_places=6)
    input: TokenRate | None = None
    output: TokenRate | None = None
    cached_input: TokenRate | None = None
    cache_write: TokenRate | None = None


class VersionsResponse(BaseModel):
    in_force: str
    versions: list[PriceVersion]


class RatesResponse(BaseModel):
    workspace_id: str
    rates: list[TenantRate]


def _invalid(exc: ValidationError) -> HTTPException:
    # Only our validators' sentences and pydantic's constraint texts: no input value is echoed.
    first = exc.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    return HTTPException(422, detail={"error": "invalid_rate", "message": message})


def build_prices_router(
    pricing: ReplayedPriceBook,
    publisher: PricePublisher,
    access: Access,
    price_admins: frozenset[str],
) -> APIRouter:
    router = APIRouter(tags=["prices"], responses=responses(*AUTH, 422))
    book = pricing.book

    def price_admin(principal: Caller) -> None:
        if principal.workspace_id not in price_admins:
            raise HTTPException(
                403,
                detail={
                    "error": "forbidden",
                    "message": "held price tables are for the workspaces in SPENDSTREAM_PRICE_ADMIN_WORKSPACES",
                },
            )

    @router.get("/v1/prices/versions", response_model=VersionsResponse, summary="Price versions, oldest first")
    async def versions(principal: Annotated[Caller, Depends(access.require("usage.read"))]) -> dict[str, Any]:
        in_force, _ = book.table_at(datetime.now(UTC).date())
        return {"in_force": in_force, "versions": book.versions()}

    @router.get("/v1/prices/held", response_model=list[PriceVersion], summary="Price versions held for approval")
    async def held(principal: Annotated[Caller, Depends(access.require("usage.read"))]) -> list[PriceVersion]:
        price_admin(principal)
        await pricing.catch_up()
        return book.held()

    @router.post(
        "/v1/prices/held/{version_id}/approve",
        response_model=PriceVersion,
        summary="Approve a held price version: it prices events from its effective day",
        responses=responses(404, s404="no held price version has this id"),
    )
    async def approve(
        principal: Annotated[Caller, Depends(access.require("settings.write"))], version_id: VersionId
    ) -> PriceVersion:
        price_admin(principal)
        await pricing.catch_up()
        try:
            record = approved(book, version_id, principal.actor, datetime.now(UTC))
        except KeyError:
            raise HTTPException(
                404, detail={"error": "not_found", "message": "no held price version has this id"}
            ) from None
        await publisher.version(record)
        await pricing.catch_up()
        return record.meta

    @router.get("/v1/prices/rates", response_model=RatesResponse, summary="The workspace's negotiated rates")
    async def rates(principal: Annotated[Caller, Depends(access.require("usage.read"))]) -> dict[str, Any]:
        return {"workspace_id": principal.workspace_id, "rates": book.rates(principal.workspace_id)}

    @router.put(
        "/v1/prices/rates/{rate_id}",
        response_model=TenantRate,
        summary="Set one negotiated rate of the workspace",
        responses=responses(400),
    )
    async def set_rate(
        principal: Annotated[Caller, Depends(access.require("settings.write"))], rate_id: RateId, body: RateRequest
    ) -> TenantRate:
        try:
            rate = TenantRate(
                rate_id=rate_id,
                workspace_id=principal.workspace_id,
                created_at=datetime.now(UTC),
                created_by=principal.actor,
                **body.model_dump(),
            )
        except ValidationError as exc:
            raise _invalid(exc) from None
        await publisher.rate(rate)
        await pricing.catch_up()
        return rate

    @router.delete(
        "/v1/prices/rates/{rate_id}",
        status_code=204,
        summary="Delete one negotiated rate of the workspace",
        responses=responses(404, s404="the workspace has no rate of this id"),
    )
    async def delete_rate(
        principal: Annotated[Caller, Depends(access.require("settings.write"))], rate_id: RateId
    ) -> Response:
        await pricing.catch_up()
        if book.rate(principal.workspace_id, rate_id) is None:
            raise HTTPException(404, detail={"error": "not_found", "message": "the workspace has no rate of this id"})
        await publisher.delete_rate(principal.workspace_id, rate_id)
        await pricing.catch_up()
        return Response(status_code=204)

    return router
