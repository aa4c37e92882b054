"""alerts' HTTP surface: `/v1/budgets` CRUD, a hard budget's live state, and each budget's alerts with their
delivery log (admin key). Reservations against hard budgets: reservations_api.py (ingest key)."""

# No `from __future__ import annotations` here: FastAPI must evaluate the Annotated[..., Depends(auth)]
# parameters at definition time, where `auth` is a local of the router factory.

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response

from spendstream.alerts.budgets import (
    HARD_AMOUNT_MESSAGE,
    MAX_HARD_AMOUNT_USD,
    BudgetBook,
    BudgetIn,
    BudgetOut,
    BudgetPatch,
    BudgetState,
    public_view,
)
from spendstream.alerts.delivery_log import DeliveryLog
from spendstream.alerts.webhooks import Failed, Refused, check_target
from spendstream.common.errors import AUTH, responses
from spendstream.common.http_auth import Access, Caller, forbidden
from spendstream.common.links import links
from spendstream.common.records import BudgetRecord

log = logging.getLogger(__name__)
MAX_BUDGETS_PER_WORKSPACE = 200
_ONE = "/v1/budgets/{budget_id}"
_ALERTS = "/v1/budgets/{budget_id}/alerts"


def _not_found() -> HTTPException:
    return HTTPException(404, detail={"error": "not_found", "message": "no such budget in this workspace"})


async def _check_urls(urls: list[str], allow_private: bool) -> None:
    for index, url in enumerate(urls):
        try:
            await check_target(url, allow_private)
        except (Refused, Failed) as exc:
            raise HTTPException(
                422,
                detail={
                    "error": "invalid_webhook",
                    "message": "the webhook URL is refused",
                    "field": f"webhooks[{index}].url",
                    "code": exc.code,
                },
            ) from None


def build_router(
    book: BudgetBook,
    deliveries: DeliveryLog,
    access: Access,
    *,
    allow_private: bool,
    rearm: Callable[[BudgetRecord, datetime], Awaitable[int]],
    forget: Callable[[BudgetRecord], Awaitable[None]],
    state: Callable[[BudgetRecord], Awaitable[BudgetState | None]],
) -> APIRouter:
    router = APIRouter(tags=["budgets"], responses=responses(*AUTH, 422))
    body_errors = responses(400)
    missing = responses(404, s404="no such budget in this workspace")
    Reader = Annotated[Caller, Depends(access.require("budgets.read"))]
    Writer = Annotated[Caller, Depends(access.require("budgets.write"))]

    def webhooks_allowed(principal: Caller) -> None:
        # A webhook sends the workspace's spend to an address the caller chooses: an admin's decision.
        if not principal.can("webhooks.write"):
            raise forbidden("a budget's webhook channels need the permission webhooks.write")

    @router.post(
        "/v1/budgets",
        status_code=201,
        response_model=BudgetOut,
        responses={
            201: {
                "links": links(
                    "budget_id", "budget_id", ("GET", _ONE), ("PATCH", _ONE), ("DELETE", _ONE), ("GET", _ALERTS)
                )
            },
            **body_errors,
            **responses(409, s409="the workspace has its maximum number of budgets"),
        },
        summary="Create a monthly USD budget; generated webhook secrets are shown in this answer only",
    )
    async def create(body: BudgetIn, principal: Writer) -> BudgetOut:
        if body.webhooks:
            webhooks_allowed(principal)
        ws = principal.workspace_id
        if len(book.of_workspace(ws)) >= MAX_BUDGETS_PER_WORKSPACE:
            raise HTTPException(
                409,
                detail={"error": "too_many_budgets", "message": f"at most {MAX_BUDGETS_PER_WORKSPACE} per workspace"},
            )
        await _check_urls([w.url for w in body.webhooks], allow_private)
        record, shown = book.new_record(ws, body)
        await book.put(record)
        log.info("budget created", extra={"budget_id": record.budget_id})
        return public_view(record, shown)

    @router.get("/v1/budgets", response_model=list[BudgetOut], summary="The workspace's budgets")
    async def list_budgets(principal: Reader) -> list[BudgetOut]:
        return [public_view(b, state=await state(b)) for b in book.of_workspace(principal.workspace_id)]

    @router.get(
        "/v1/budgets/{budget_id}",
        response_model=BudgetOut,
        responses=missing,
        summary="One budget; a hard one with its live state (committed, reserved, remaining)",
    )
    async def show(budget_id: str, principal: Reader) -> BudgetOut:
        record = book.get(principal.workspace_id, budget_id)
        if record is None:
            raise _not_found()
        return public_view(record, state=await state(record))

    @router.patch(
        "/v1/budgets/{budget_id}",
        response_model=BudgetOut,
        responses={**body_errors, **missing},
        summary="Change a budget; thresholds whose new level is above current spend are re-armed",
    )
    async def change(budget_id: str, patch: BudgetPatch, principal: Writer) -> BudgetOut:
        if patch.webhooks is not None:
            webhooks_allowed(principal)
        record = book.get(principal.workspace_id, budget_id)
        if record is None:
            raise _not_found()
        if patch.webhooks is not None:
            await _check_urls([w.url for w in patch.webhooks], allow_private)
        updated, shown = book.changed_record(record, patch)
        if updated.hard and updated.amount_usd > MAX_HARD_AMOUNT_USD:
            raise HTTPException(
                422,
                detail={
                    "error": "invalid_request",
                    "message": HARD_AMOUNT_MESSAGE,
                    "field": "body.amount_usd",
                    "code": "less_than_equal",
                },
            )
        # Published first, re-armed second: see thresholds.py for why this order cannot double-fire.
        await book.put(updated)
        rearmed = await rearm(updated, datetime.now(UTC))
        log.info("budget changed", extra={"budget_id": budget_id, "rearmed": rearmed})
        return public_view(updated, shown)

    @router.delete("/v1/budgets/{budget_id}", status_code=204, responses=missing)
    async def delete(budget_id: str, principal: Writer) -> Response:
        record = book.get(principal.workspace_id, budget_id)
        if record is None:
            raise _not_found()
        await book.delete(budget_id)
        await forget(record)
        return Response(status_code=204)

    @router.get(
        "/v1/budgets/{budget_id}/alerts",
        responses=missing,
        summary="The budget's alerts of the last 30 days and their delivery log (attempts and status per channel)",
    )
    async def alerts(budget_id: str, principal: Reader) -> dict[str, Any]:
        if book.get(principal.workspace_id, budget_id) is None:
            raise _not_found()
        return {"budget_id": budget_id, "alerts": await deliveries.of_budget(principal.workspace_id, budget_id)}

    return router
