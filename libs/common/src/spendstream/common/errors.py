"""The one error body every spendstream route answers with, and the handlers that make every error take it.

`{"error": <code>, "message": <text>}`, plus `field` and `code` when one input is at fault, or `details` (one
`{field, code}` per problem) when the request failed schema validation, or `budget_id` and `remaining_usd` when a
hard budget refused a reservation (alerts). Never the input's value. Routes raise
`HTTPException(status, detail={"error": ..., "message": ...})` or return such a body; the handlers
below give FastAPI's and Starlette's own errors (validation, unparsable body, unknown route, method not allowed)
the same shape, and `responses(...)` documents them in `/openapi.json`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import compile_path


class FieldError(BaseModel):
    field: str = Field(description="where in the request: `body.events.0.timestamp`, `query.from`, ...")
    code: str = Field(description="what kind of problem, e.g. `missing`, `string_too_long`")


class ErrorBody(BaseModel):
    """Every error answer of every route."""

    error: str = Field(description="machine-readable code, e.g. `unauthorized`, `not_found`, `invalid_request`")
    message: str = Field(description="for humans; never quotes the request's data")
    field: str | None = Field(default=None, description="the input at fault, when there is one")
    code: str | None = Field(default=None, description="the reason for that input, when there is one")
    details: list[FieldError] | None = Field(default=None, description="each schema violation of the request")
    budget_id: str | None = Field(
        default=None, description="`budget_exceeded`, `budget_state_unavailable`: the hard budget that refused"
    )
    remaining_usd: str | None = Field(
        default=None, description="`budget_exceeded`: what the budget has left now (amount - committed - reserved)"
    )


# What each status means on any route; a route documents the statuses it can answer (`responses`).
DESCRIPTIONS: dict[int, str] = {
    400: "the body is not parsable as JSON or as the declared media type",
    401: "missing, unknown or revoked API key or session (`WWW-Authenticate: Bearer`)",
    402: "a hard budget has not enough left: `budget_exceeded`, naming `budget_id` and `remaining_usd`",
    403: "`forbidden`: the caller (a key's scope, a member's role) lacks the route's permission (`x-permission`); "
    "`csrf`: a cookie-authenticated change without its `X-CSRF-Token`; or the workspace is cancelled",
    404: "no such resource in the key's workspace",
    409: "conflicts with the current state",
    410: "the link or token is used, revoked or expired",
    413: "the body is too large",
    415: "unsupported media type or content encoding",
    422: "the request does not match the schema (`details`), or breaks a rule of this route",
    429: "too many requests: rate limit, quota or failed authentications; see `Retry-After`",
    502: "an upstream service this route relies on (e.g. the identity provider) failed or answered wrongly",
    503: "a dependency cannot take the request now; nothing was done, retry after `Retry-After`",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}

# What every route with an API-key check can answer before its handler runs.
AUTH = (401, 403, 429)


def responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error answers: `responses(*AUTH, 404, 422)`; `descriptions` overrides by `s<status>`."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "model": ErrorBody,
            "description": descriptions.get(f"s{status}", DESCRIPTIONS[status]),
        }
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        out[status] = entry
    return out


_DEFAULT_CODES = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def _body(status: int, detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict) and isinstance(detail.get("error"), str):
        body = {k: v for k, v in detail.items() if k in ErrorBody.model_fields and v is not None}
        body.setdefault("message", body["error"].replace("_", " "))
        return body
    # Starlette's and FastAPI's own errors carry a phrase ("Not Found", "There was an error parsing the body").
    message = detail if isinstance(detail, str) and detail else "error"
    return {"error": _DEFAULT_CODES.get(status, f"http_{status}"), "message": message}


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of the app serves at `path` (Starlette names only the first matching route's)."""
    found: set[str] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            original = getattr(route, "original_router", None)
            if original is not None:
                walk(list(original.routes), prefix + route.include_context.prefix)
            elif getattr(route, "methods", None) and hasattr(route, "path"):
                if compile_path(prefix + route.path)[0].match(path):
                    found.update(route.methods)

    walk(list(app.routes), "")
    return sorted(found)


def install(app: FastAPI) -> None:
    """Give every error of `app` the ErrorBody shape; a 405 names every method of the path in `Allow`."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Never echo the input back: only where and what kind of error.
        details = [{"field": ".".join(str(p) for p in e["loc"]), "code": e["type"]} for e in exc.errors()]
        body = {"error": "invalid_request", "message": "the request does not match the schema", "details": details}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(app, request.url.path))
        return JSONResponse(_body(exc.status_code, exc.detail), status_code=exc.status_code, headers=headers or None)
