"""The monolith's API is what its `/openapi.json` says: schemathesis with every check, in all its phases
(examples, coverage, fuzzing, and stateful sequences following the links it infers), against the four services
in one process on the test stack. Seeded and bounded in examples, so a run is reproducible and short.

Every status a route answers is documented, every error body is the one `ErrorBody`, a method a path does not
serve is a 405 with `Allow` naming every method it does, and schema-invalid input is refused.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.security.pipeline import live
from tests.support import Stack, auth, create_workspace, new_isolation, provision

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SEED = 20
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
MAX_EXAMPLES = 10

# Schema-valid data these routes refuse by rules JSON Schema cannot state, so "valid data is accepted"
# (positive_data_acceptance) is off there and only there: /v1/events' time window and privacy guard (content
# words, PII values), /v1/usage's span of at most 400 days between `from` and `to` (the default `to` is today),
# a budget amount's at most 9 decimal places and positive value when sent as a string, a tenant rate's kind
# deciding which of percent and per-token prices it takes, a reservation's exactly one of `estimated_cost_usd`
# and `estimate` (whose model the price book must know), and the revenue routes' rules (a margin needs a rate for
# each currency of its months; the Stripe webhook needs Stripe's signature), and people's members routes (an
# invitation's address must be local@domain.tld, its token one people mailed, a member id one of the workspace).
CROSS_FIELD_RULES = ("ingest", "usage", "budgets", "prices", "reservations", "revenue", "members")


@pytest.fixture(scope="module")
def monolith(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    iso = new_isolation(stack, Path(tmp_path_factory.mktemp("contract")))
    asyncio.run(provision(iso))
    # One workspace per kind of route: admin routes cancel and rotate, deletions erase the whole workspace.
    keys = {name: asyncio.run(create_workspace(iso, name)) for name in ("usage", "admin", "doomed")}
    with live(iso) as (url, _):
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/v1/usage", headers=auth(keys["usage"]["read"])).status_code == 401:
            assert time.monotonic() < deadline, "the workspace's keys never authenticated"
            time.sleep(0.2)
        yield url, keys


def _config(keys: dict[str, Any]) -> str:
    key_of_tag = {
        "ingest": keys["usage"]["ingest"],
        "usage": keys["usage"]["read"],
        "budgets": keys["usage"]["admin"],
        "prices": keys["usage"]["admin"],
        "reservations": keys["usage"]["ingest"],
        "revenue": keys["usage"]["admin"],
        "members": keys["usage"]["admin"],
        "admin": keys["admin"]["admin"],
        "retention": keys["doomed"]["admin"],
    }
    lines = [f"[generation]\nmax-examples = {MAX_EXAMPLES}\n"]
    for tag, key in key_of_tag.items():
        lines.append(f'[[operations]]\ninclude-tag = "{tag}"\nheaders = {{ Authorization = "Bearer {key}" }}')
        if tag in CROSS_FIELD_RULES:
            lines.append("checks.positive_data_acceptance.enabled = false")
        if tag == "ingest":  # more than 500 events is 413, as the document says
            lines.append(
                'checks.negative_data_rejection.expected-statuses = ["400", "401", "403", "413", "415", "422"]'
            )
        lines.append("")
    return "\n".join(lines)


def test_every_answer_of_every_route_is_what_the_openapi_document_says(
    monolith: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, keys = monolith
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(keys))
    st = Path(sys.executable).with_name("st")
    run = subprocess.run(
        [str(st), "--config-file", str(config), "run", f"{url}/openapi.json", "--seed", str(SEED), "--no-color"],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=tmp_path,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-8000:]
    tested = next(line for line in report.splitlines() if "Tested:" in line)
    document = httpx.get(f"{url}/openapi.json").json()
    documented = sum(1 for item in document["paths"].values() for method in item if method in _METHODS)
    assert int(tested.split()[-1]) == documented, report[-3000:]  # every documented operation, none skipped
    assert "Stateful" in report and "generated" in report


def test_errors_outside_any_route_take_the_documented_body(monolith: tuple[str, dict[str, Any]]) -> None:
    url, keys = monolith
    with httpx.Client(base_url=url, timeout=30) as http:
        unknown = http.get("/v1/nothing-here", headers=auth(keys["usage"]["read"]))
        assert unknown.status_code == 404 and unknown.json() == {"error": "not_found", "message": "Not Found"}
        wrong = http.put("/v1/admin/keys", headers=auth(keys["admin"]["admin"]))
        assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
        assert set(wrong.headers["Allow"].split(", ")) == {"GET", "POST"}
        document = http.get("/openapi.json").json()
        assert "HTTPValidationError" not in document["components"]["schemas"]
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                for status, answer in operation["responses"].items():
                    if status.startswith(("4", "5")):
                        schema = answer["content"]["application/json"]["schema"]
                        refs = [schema.get("$ref")] + [s.get("$ref") for s in schema.get("anyOf", [])]
                        assert "#/components/schemas/ErrorBody" in refs, (method, path, status)
