"""OpenAPI links: which later request an answer's field feeds (clients and schemathesis' stateful runs follow
them from a created resource to the routes that read, change and delete it)."""

from __future__ import annotations

from typing import Any


def links(field: str, parameter: str, *targets: tuple[str, str]) -> dict[str, Any]:
    """`links` of a response whose body's `field` is the path `parameter` of each (method, path) target."""
    out: dict[str, Any] = {}
    for method, path in targets:
        pointer = path.replace("~", "~0").replace("/", "~1")
        name = method.lower() + "".join(p.strip("{}").title().replace("_", "") for p in path.split("/"))
        out[name] = {
            "operationRef": f"#/paths/{pointer}/{method.lower()}",
            "parameters": {parameter: f"$response.body#/{field}"},
        }
    return out
