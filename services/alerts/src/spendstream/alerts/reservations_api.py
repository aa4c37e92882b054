"""`/v1/reservations`: ask a hard budget before a call, release early (an ingest key: the caller is a producer).

The answer is at once: `201` with the reservation (or that no hard budget covers the call), `402
budget_exceeded`, or `503 budget_state_unavailable` while Redis is unreachable and a covering budget fails
closed. See reservations.py for the atomic check-and-reserve.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the Annotated[..., Depends(auth)]
# parameters at definition time, where `auth` is a local of the router factory.

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from redis.exceptions import RedisError

from spendstream.alerts.periods import from_nanos, to_nanos
from spendstream.alerts.reservations import Allowed, Denied, Enforcement, Reservations
from spendstream.common.errors import AUTH, responses
from spendstream.common.events import (
    MAX_TAG_VALUE_LENGTH,
    MAX_TAGS,
    MAX_TOKENS,
    MODEL_PATTERN,
    PROVIDER_PATTERN,
    TAG_KEY_PATTERN,
)
from spendstream.common.http_auth import Access, Caller
from spendstream.common.links import links
from spendstream.common.pricebook import PriceBook

_ONE = "/v1/reservations/{reservation_id}"
MAX_ESTIMATE_USD = 1_000_000
MAX_TTL_SECONDS = 86_400
TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS, strict=True)]
TagKey = Annotated[str, StringConstraints(pattern=f"^{TAG_KEY_PATTERN}$")]
TagValue = Annotated[str, StringConstraints(max_length=MAX_TAG_VALUE_LENGTH)]


class TokenEstimate(BaseModel):
    """A call the service prices with the shared price book (as it prices events without `cost_usd`: today's table
    version and the workspace's negotiated rates)."""

    model_config = ConfigDict(extra="forbid")

    provider: Annotated[str, StringConstraints(pattern=f"^{PROVIDER_PATTERN}$")]
    model: Annotated[str, StringConstraints(pattern=f"^{MODEL_PATTERN}$")]
    input_tokens: TokenCount
    max_output_tokens: TokenCount = Field(description="the request's max_tokens / max_output_tokens")


@dataclass(frozen=True, slots=True)
class _EstimatedCall:
    """An estimate as the price book reads a call's token counts: no cache, standard tier."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_creation_1h_input_tokens: int | None = None
    service_tier: str | None = None


class ReservationIn(BaseModel):
    """Exactly one of `estimated_cost_usd` and `estimate`, and the call's tags (as its usage event will carry)."""

    model_config = ConfigDict(extra="forbid")

    estimated_cost_usd: (
        Annotated[Decimal, Field(ge=0, le=MAX_ESTIMATE_USD, allow_inf_nan=False, decimal_places=9)] | None
    ) = None
    estimate: TokenEstimate | None = None
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=MAX_TAGS)
    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_TTL_SECONDS, strict=True)] | None = Field(
        default=None, description="held this long unless settled or released (default and maximum: settings)"
    )

    @model_validator(mode="after")
    def _one_estimate(self) -> "ReservationIn":
        if (self.estimated_cost_usd is None) == (self.estimate is None):
            raise ValueError("give exactly one of estimated_cost_usd and estimate")
        return self


class HeldBudget(BaseModel):
    budget_id: str
    remaining_usd: str | None = Field(description="left after this reservation; null when not reserved")


class ReservationOut(BaseModel):
    reservation_id: str = Field(description="pass it as the usage event's `reservation_id` to settle")
    expires_at: datetime | None = Field(description="released then unless settled; null when nothing is held")
    estimated_cost_usd: str
    enforcement: Enforcement = Field(
        description="`reserved`: held on every listed hard budget; `no_hard_budget`: no hard budget covers these "
        "tags, nothing held; `allowed_without_redis`: Redis is unreachable and every covering budget's "
        "`on_redis_unavailable` is `allow`, nothing held"
    )
    budgets: list[HeldBudget]


def build_router(reservations: Reservations, prices: PriceBook, access: Access, *, ttl: int, max_ttl: int) -> APIRouter:
    router = APIRouter(tags=["reservations"], responses=responses(*AUTH, 422))
    Producer = Annotated[Caller, Depends(access.require("reservations.write"))]

    def priced(workspace_id: str, body: ReservationIn, now: datetime) -> int:
        if body.estimated_cost_usd is not None:
            return to_nanos(body.estimated_cost_usd)
        estimate = body.estimate
        assert estimate is not None
        call = _EstimatedCall(estimate.input_tokens, estimate.max_output_tokens)
        cost, _ = prices.price(workspace_id, estimate.provider, estimate.model, now, call)
        if cost is None:
            raise HTTPException(
                422,
                detail={
                    "error": "unpriced_model",
                    "message": "the price table has no per-token price for this provider and model; "
                    "send estimated_cost_usd",
                    "field": "body.estimate.model",
                    "code": "unpriced_model",
                },
            )
        return to_nanos(cost)

    @router.post(
        "/v1/reservations",
        status_code=201,
        response_model=ReservationOut,
        responses={
            201: {"links": links("reservation_id", "reservation_id", ("DELETE", _ONE))},
            **responses(
                400,
                402,
                503,
                s422="the request does not match the schema, `ttl_seconds` is above the configured maximum, or "
                "`unpriced_model`",
                s503="`budget_state_unavailable`: Redis is unreachable and a covering hard budget fails closed "
                "(`on_redis_unavailable: deny`); nothing was reserved",
            ),
        },
        summary="Reserve an estimated cost on every hard budget the call's tags fall under, all or none",
    )
    async def reserve(body: ReservationIn, principal: Producer) -> ReservationOut:
        if body.ttl_seconds is not None and body.ttl_seconds > max_ttl:
            raise HTTPException(
                422,
                detail={
                    "error": "invalid_request",
                    "message": f"ttl_seconds is at most {max_ttl}",
                    "field": "body.ttl_seconds",
                    "code": "less_than_equal",
                },
            )
        now = datetime.now(UTC)
        nanos = priced(principal.workspace_id, body, now)
        outcome = await reservations.reserve(principal.workspace_id, nanos, body.tags, body.ttl_seconds or ttl, now)
        if isinstance(outcome, Denied):
            raise HTTPException(
                402,
                detail={
                    "error": "budget_exceeded",
                    "message": "a hard budget has not enough left for this estimate; nothing was reserved",
                    "budget_id": outcome.budget_id,
                    "remaining_usd": format(from_nanos(outcome.left), "f"),
                },
            )
        if not isinstance(outcome, Allowed):
            raise HTTPException(
                503,
                detail={
                    "error": "budget_state_unavailable",
                    "message": "the hard budget's live state (Redis) is unreachable and its policy is to deny; "
                    "nothing was reserved",
                    "budget_id": outcome.budget_id,
                },
                headers={"Retry-After": "1"},
            )
        return ReservationOut(
            reservation_id=outcome.reservation_id,
            expires_at=outcome.expires_at,
            estimated_cost_usd=format(from_nanos(nanos), "f"),
            enforcement=outcome.enforcement,
            budgets=[
                HeldBudget(budget_id=b, remaining_usd=None if left is None else format(from_nanos(left), "f"))
                for b, left in outcome.budgets
            ],
        )

    @router.delete(
        _ONE,
        status_code=204,
        responses=responses(
            404,
            503,
            s503="`budget_state_unavailable`: Redis is unreachable",
            s404="no open reservation with this id (unknown, settled, expired or released)",
        ),
        summary="Release an open reservation now (a call that was not made)",
    )
    async def release(
        reservation_id: Annotated[str, Path(pattern=r"^rsv_[0-9a-f]{24}$")], principal: Producer
    ) -> Response:
        try:
            released = await reservations.release(principal.workspace_id, reservation_id)
        except RedisError:
            raise HTTPException(
                503,
                detail={"error": "budget_state_unavailable", "message": "Redis is unreachable; nothing was released"},
                headers={"Retry-After": "1"},
            ) from None
        if not released:
            raise HTTPException(404, detail={"error": "not_found", "message": "no open reservation with this id"})
        return Response(status_code=204)

    return router
