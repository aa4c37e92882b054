"""`/v1/connectors` (changes `settings.write`, reads `usage.read`): create, list, show and delete a workspace's
provider connectors.

The provider's admin key is accepted once, sealed at once (sealing.py) and never shown again: answers carry
its last four characters at most. The workspace is the caller's, never a parameter.
"""

# No `from __future__ import annotations`: FastAPI evaluates the Annotated[..., Depends(auth)] parameters.

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from spendstream.common.errors import AUTH, responses
from spendstream.common.http_auth import Access, Caller
from spendstream.common.records import ConnectorRecord, ConnectorStatus, TagMapping
from spendstream.connectors.csv_import import ImportRefused, parse
from spendstream.connectors.registry import Registry
from spendstream.connectors.sealing import NoDataKey, hint, seal


class CreateConnector(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["openai", "anthropic"]
    # SecretStr: a validation error or a log of the model never shows it.
    admin_key: SecretStr = Field(description="the provider's read-only admin key; stored sealed, shown never again")
    mapping: TagMapping | None = None


class ConnectorView(BaseModel):
    connector_id: str
    provider: str
    key_hint: str = Field(description="the admin key's last four characters")
    mapping: TagMapping | None
    status: ConnectorStatus
    reason: str | None
    next_day: date | None = Field(description="every day before it was read at least once")
    last_success_at: datetime | None
    created_at: datetime


class ConnectorList(BaseModel):
    connectors: list[ConnectorView]


def _view(registry: Registry, connector: ConnectorRecord) -> dict[str, Any]:
    state = registry.state(connector)
    return {
        "connector_id": connector.connector_id,
        "provider": connector.provider,
        "key_hint": f"…{connector.key_hint}",
        "mapping": connector.mapping,
        "status": state.status if state else "pending",
        "reason": state.reason if state else None,
        "next_day": state.next_day if state else None,
        "last_success_at": state.last_success_at if state else None,
        "created_at": connector.created_at,
    }


MAX_IMPORT_BYTES = 8 * 1024 * 1024


class ImportedDay(BaseModel):
    provider: str
    day: date
    rows: int


class ImportResult(BaseModel):
    imported: list[ImportedDay]


def _not_found() -> HTTPException:
    return HTTPException(404, detail={"error": "not_found", "message": "no such connector in this workspace"})


def build_router(registry: Registry, access: Access) -> APIRouter:
    # Reads need `usage.read`: a connector's view is where the provider-side figures come from and how fresh
    # they are, with no secret (the admin key's hint is its last characters); every change `settings.write`.
    router = APIRouter(tags=["connectors"], responses=responses(*AUTH, 422))

    @router.post("/v1/connectors", status_code=201, response_model=ConnectorView, summary="Connect a provider")
    async def create(
        principal: Annotated[Caller, Depends(access.require("settings.write"))], body: CreateConnector
    ) -> dict[str, Any]:
        admin_key = body.admin_key.get_secret_value()
        if not 8 <= len(admin_key) <= 512 or not admin_key.isprintable() or " " in admin_key:
            raise HTTPException(
                422, detail={"error": "invalid_admin_key", "message": "admin_key must be 8-512 printable characters"}
            )
        connector_id = f"con_{uuid.uuid4().hex[:20]}"
        try:
            version, sealed = await seal(registry.keyring, principal.workspace_id, connector_id, admin_key)
        except NoDataKey:
            raise HTTPException(
                409, detail={"error": "no_data_key", "message": "the workspace has no data key"}
            ) from None
        connector = ConnectorRecord(
            connector_id=connector_id,
            workspace_id=principal.workspace_id,
            provider=body.provider,
            key_version=version,
            sealed_key=sealed,
            key_hint=hint(admin_key),
            mapping=body.mapping,
            created_at=datetime.now(UTC),
        )
        await registry.save(connector)
        registry.wake.set()
        return _view(registry, connector)

    @router.get("/v1/connectors", response_model=ConnectorList, summary="The workspace's connectors")
    async def list_all(principal: Annotated[Caller, Depends(access.require("usage.read"))]) -> dict[str, Any]:
        return {"connectors": [_view(registry, c) for c in registry.of_workspace(principal.workspace_id)]}

    @router.get("/v1/connectors/{connector_id}", response_model=ConnectorView, summary="A connector's status")
    async def show(
        principal: Annotated[Caller, Depends(access.require("usage.read"))], connector_id: str
    ) -> dict[str, Any]:
        connector = registry.get(principal.workspace_id, connector_id)
        if connector is None:
            raise _not_found()
        return _view(registry, connector)

    @router.delete("/v1/connectors/{connector_id}", status_code=204, summary="Remove a connector and its sealed key")
    async def delete(
        principal: Annotated[Caller, Depends(access.require("settings.write"))], connector_id: str
    ) -> None:
        connector = registry.get(principal.workspace_id, connector_id)
        if connector is None:
            raise _not_found()
        await registry.delete(connector)

    @router.post(
        "/v1/connectors/import",
        response_model=ImportResult,
        summary="Import a CSV of daily provider usage (README: the format); all lines or none",
        responses={413: {"description": "the file is too large"}},
    )
    async def import_csv(
        principal: Annotated[Caller, Depends(access.require("settings.write"))], request: Request
    ) -> dict[str, Any]:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_IMPORT_BYTES:
                raise HTTPException(
                    413, detail={"error": "too_large", "message": f"at most {MAX_IMPORT_BYTES} bytes a file"}
                )
        try:
            text = bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise HTTPException(
                422, detail={"error": "invalid_encoding", "message": "the file must be UTF-8"}
            ) from None
        try:
            days = parse(text, principal.workspace_id)
        except ImportRefused as refused:
            first = refused.errors[0]
            raise HTTPException(
                422,
                detail={
                    "error": "invalid_csv",
                    "message": f"line {first.line}, field {first.field}: {first.message}; "
                    f"{len(refused.errors)} problems in all, nothing was imported",
                    "field": f"body.line.{first.line}.{first.field}",
                    "code": first.code,
                    # `body.line.<n>.<field>`: n counts the header as line 1.
                    "details": [
                        {"field": f"body.line.{e.line}.{e.field}", "code": e.code} for e in refused.errors[:100]
                    ],
                },
            ) from None
        for day in days:
            await registry.publish_day(day)
        return {"imported": [{"provider": d.provider, "day": d.day, "rows": len(d.rows)} for d in days]}

    return router
