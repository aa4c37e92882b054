"""API-key authentication on HTTP routes: Bearer or X-API-Key, 401 for a missing or unknown key, 403 for a key
of another scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from spendstream.common import errors
from spendstream.common.auth_brake import AuthBrake
from spendstream.common.http_auth import require_scope
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyDirectory, Principal

READ = Principal(workspace_id="ws1", scope="read", key_id="k1")
ADMIN = Principal(workspace_id="ws1", scope="admin", key_id="k2")


class DictDirectory(KeyDirectory):
    """Keys from a dict instead of the replayed API-key topic (a revoked key is simply absent)."""

    def __init__(self, keys: dict[str, Principal]) -> None:
        self.keys = keys
        self.brake = AuthBrake(BaseServiceSettings.model_construct())  # the defaults

    def authenticate(self, key: str) -> Principal | None:
        return self.keys.get(key)


DIRECTORY = DictDirectory({"ssk_read_x": READ, "ssk_admin_y": ADMIN})
READER = require_scope(DIRECTORY, "read", "admin")
ADMIN_ONLY = require_scope(DIRECTORY, "admin")
APP = FastAPI()
errors.install(APP)  # as build_http_app does: every error answers the ErrorBody


@APP.get("/read")
def read(principal: Annotated[Principal, Depends(READER)]) -> dict[str, str]:
    return {"key_id": principal.key_id}


@APP.get("/admin")
def admin(principal: Annotated[Principal, Depends(ADMIN_ONLY)]) -> dict[str, str]:
    return {"key_id": principal.key_id}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://test") as http:
        yield http


async def test_a_bearer_key_or_an_x_api_key_authenticates(client: httpx.AsyncClient) -> None:
    assert (await client.get("/read", headers={"Authorization": "Bearer ssk_read_x"})).json() == {"key_id": "k1"}
    assert (await client.get("/read", headers={"authorization": "bearer  ssk_read_x "})).json() == {"key_id": "k1"}
    assert (await client.get("/read", headers={"X-API-Key": "ssk_admin_y"})).json() == {"key_id": "k2"}


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}, {"Authorization": "Basic ssk_read_x"}]
)
async def test_a_missing_or_unknown_key_is_401_with_a_bearer_challenge(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/read", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"


async def test_a_key_of_another_scope_is_403(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin", headers={"X-API-Key": "ssk_read_x"})
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert (await client.get("/admin", headers={"X-API-Key": "ssk_admin_y"})).status_code == 200
