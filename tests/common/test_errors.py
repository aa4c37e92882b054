"""Every error of an app built with `errors.install` takes the one ErrorBody shape, never echoing input."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict

from spendstream.common import errors


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str


def _app() -> FastAPI:
    app = FastAPI()
    errors.install(app)
    router = APIRouter(prefix="/things")

    @router.get("")
    async def list_things() -> list[str]:
        return []

    @router.post("")
    async def create(thing: Thing) -> Thing:
        return thing

    @router.get("/{thing_id}")
    async def show(thing_id: str) -> Thing:
        raise HTTPException(404, detail={"error": "not_found", "message": "no such thing"})

    @router.delete("/{thing_id}")
    async def delete(thing_id: str) -> None:
        raise HTTPException(422, detail={"error": "refused", "field": "thing_id", "code": "locked"})

    app.include_router(router)
    return app


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://test") as client:
        yield client


async def test_a_schema_violation_names_where_and_what_but_never_the_value(http: httpx.AsyncClient) -> None:
    r = await http.post("/things", json={"name": 1, "secret-looking-key": "4111111111111111"})
    assert r.status_code == 422
    body = r.json()
    assert (body["error"], body["message"]) == ("invalid_request", "the request does not match the schema")
    assert {(d["field"], d["code"]) for d in body["details"]} == {
        ("body.name", "string_type"),
        ("body.secret-looking-key", "extra_forbidden"),
    }
    assert "4111" not in r.text
    errors.ErrorBody.model_validate(body)


async def test_route_errors_are_flat_and_always_carry_a_message(http: httpx.AsyncClient) -> None:
    r = await http.get("/things/x")
    assert (r.status_code, r.json()) == (404, {"error": "not_found", "message": "no such thing"})
    r = await http.delete("/things/x")
    assert r.status_code == 422
    assert r.json() == {"error": "refused", "message": "refused", "field": "thing_id", "code": "locked"}


async def test_framework_errors_take_the_same_body(http: httpx.AsyncClient) -> None:
    unknown = await http.get("/nothing")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "not_found", "message": "Not Found"})
    unparsable = await http.post("/things", content=b"\xff\xfe{", headers={"Content-Type": "application/json"})
    assert (unparsable.status_code, unparsable.json()["error"]) == (400, "invalid_body")
    truncated = await http.post("/things", content=b"{", headers={"Content-Type": "application/json"})
    assert (truncated.status_code, truncated.json()["details"]) == (422, [{"field": "body.1", "code": "json_invalid"}])


async def test_a_405_names_every_method_of_the_path_in_allow(http: httpx.AsyncClient) -> None:
    # Starlette's own 405 named only the first route that matched the path (GET), though POST serves it too.
    r = await http.put("/things")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    assert set(r.headers["Allow"].split(", ")) == {"GET", "POST"}
    r = await http.post("/things/x")
    assert r.status_code == 405 and set(r.headers["Allow"].split(", ")) == {"DELETE", "GET"}


def test_responses_document_the_error_body_and_retry_after() -> None:
    documented = errors.responses(*errors.AUTH, 404, s404="no such thing")
    assert set(documented) == {401, 403, 404, 429}
    assert all(entry["model"] is errors.ErrorBody for entry in documented.values())
    assert documented[404]["description"] == "no such thing"
    assert "Retry-After" in documented[429]["headers"] and "WWW-Authenticate" in documented[401]["headers"]
