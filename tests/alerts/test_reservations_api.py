"""/v1/reservations over the real alerts service: an ingest key reserves, a hard budget refuses with one
documented body, GET shows committed / reserved / remaining, and with Redis stopped each policy answers as
documented."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from spendstream.alerts import metrics
from spendstream.alerts.app import create_service as create_alerts
from tests.alerts.conftest import alerts_settings, budget_body
from tests.support import Isolation, PrivateRedis, auth, create_workspace, serving

pytestmark = pytest.mark.integration


def denials(reason: str) -> float:
    return float(metrics.RESERVATION_DENIALS.labels(reason)._value.get())


async def test_reserve_refuse_show_and_release(iso: Isolation, caplog: pytest.LogCaptureFixture) -> None:
    ws = await create_workspace(iso)
    async with serving([create_alerts(alerts_settings(iso))]) as client:
        admin, producer = auth(ws["admin"]), auth(ws["ingest"])
        created = await client.post("/v1/budgets", headers=admin, json=budget_body(amount_usd="1", hard=True))
        assert created.status_code == 201, created.text
        budget_id = created.json()["budget_id"]

        held = await client.post(
            "/v1/reservations", headers=producer, json={"estimated_cost_usd": "0.6", "tags": {"feature": "chat"}}
        )
        assert held.status_code == 201, held.text
        assert held.json()["enforcement"] == "reserved" and held.json()["expires_at"]
        assert held.json()["budgets"] == [{"budget_id": budget_id, "remaining_usd": "0.400000000"}]

        before = denials("budget_exceeded")
        with caplog.at_level(logging.WARNING, logger="spendstream.audit"):
            refused = await client.post(
                "/v1/reservations", headers=producer, json={"estimated_cost_usd": "0.5", "tags": {"feature": "chat"}}
            )
        assert refused.status_code == 402
        assert refused.json() == {
            "error": "budget_exceeded",
            "message": "a hard budget has not enough left for this estimate; nothing was reserved",
            "budget_id": budget_id,
            "remaining_usd": "0.400000000",
        }
        assert denials("budget_exceeded") == before + 1
        [line] = [r for r in caplog.records if r.name == "spendstream.audit"]
        assert (line.audit, line.budget_id, line.reason) == ("reservation.denied", budget_id, "budget_exceeded")  # type: ignore[attr-defined]
        assert "chat" not in str(line.__dict__)

        state = (await client.get(f"/v1/budgets/{budget_id}", headers=admin)).json()["state"]
        assert (state["committed_usd"], state["reserved_usd"], state["remaining_usd"]) == (
            "0.000000000",
            "0.600000000",
            "0.400000000",
        )
        rid = held.json()["reservation_id"]
        assert (await client.delete(f"/v1/reservations/{rid}", headers=producer)).status_code == 204
        assert (await client.delete(f"/v1/reservations/{rid}", headers=producer)).status_code == 404
        listed = (await client.get("/v1/budgets", headers=admin)).json()
        assert listed[0]["state"]["reserved_usd"] == "0.000000000"


async def test_a_token_estimate_is_priced_with_the_shared_table_and_bad_requests_are_refused(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with serving([create_alerts(alerts_settings(iso))]) as client:
        producer = auth(ws["ingest"])
        # gpt-4o-mini: 1.5e-7 per input and 6e-7 per output token.
        estimate = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1000, "max_output_tokens": 1000}
        priced = await client.post("/v1/reservations", headers=producer, json={"estimate": estimate})
        assert priced.status_code == 201, priced.text
        assert priced.json()["estimated_cost_usd"] == "0.000750000"
        assert priced.json()["enforcement"] == "no_hard_budget"

        unpriced = await client.post(
            "/v1/reservations", headers=producer, json={"estimate": {**estimate, "model": "no-such-model-x"}}
        )
        assert unpriced.status_code == 422 and unpriced.json()["error"] == "unpriced_model"
        for body in ({}, {"estimate": estimate, "estimated_cost_usd": "1"}, {"estimated_cost_usd": "-1"}):
            assert (await client.post("/v1/reservations", headers=producer, json=body)).status_code == 422
        too_long = {"estimated_cost_usd": "1", "ttl_seconds": 7200}
        assert (await client.post("/v1/reservations", headers=producer, json=too_long)).status_code == 422
        secret_tag = {"estimated_cost_usd": "1", "tags": {"customer_id": "x" * 121}}
        refused = await client.post("/v1/reservations", headers=producer, json=secret_tag)
        assert refused.status_code == 422 and "xxx" not in refused.text
        for key in (ws["read"], ws["admin"]):
            answer = await client.post("/v1/reservations", headers=auth(key), json={"estimated_cost_usd": "1"})
            assert answer.status_code == 403


async def test_with_redis_stopped_a_hard_budget_fails_closed_unless_its_policy_allows(
    iso: Isolation, tmp_path: Path
) -> None:
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    try:
        ws = await create_workspace(iso)
        settings = alerts_settings(iso, redis_url=redis.url)
        async with serving([create_alerts(settings)]) as client:
            admin, producer = auth(ws["admin"]), auth(ws["ingest"])
            closed = await client.post(
                "/v1/budgets",
                headers=admin,
                json=budget_body(amount_usd="10", hard=True, scope={"tag": "feature", "value": "chat"}),
            )
            open_ = await client.post(
                "/v1/budgets",
                headers=admin,
                json=budget_body(
                    amount_usd="10",
                    hard=True,
                    on_redis_unavailable="allow",
                    scope={"tag": "feature", "value": "search"},
                ),
            )
            assert closed.json()["on_redis_unavailable"] == "deny"  # the default of a hard budget
            redis.stop()

            before = denials("budget_state_unavailable")
            chat = {"estimated_cost_usd": "1", "tags": {"feature": "chat"}}
            denied = await client.post("/v1/reservations", headers=producer, json=chat)
            assert denied.status_code == 503 and denied.headers["Retry-After"] == "1"
            assert denied.json()["error"] == "budget_state_unavailable"
            assert denied.json()["budget_id"] == closed.json()["budget_id"]
            assert denials("budget_state_unavailable") == before + 1

            search = {"estimated_cost_usd": "1", "tags": {"feature": "search"}}
            allowed = await client.post("/v1/reservations", headers=producer, json=search)
            assert allowed.status_code == 201
            assert allowed.json()["enforcement"] == "allowed_without_redis"
            assert allowed.json()["budgets"] == [{"budget_id": open_.json()["budget_id"], "remaining_usd": None}]
            assert allowed.json()["expires_at"] is None

            shown = await client.get(f"/v1/budgets/{closed.json()['budget_id']}", headers=admin)
            assert shown.status_code == 200 and shown.json()["state"] is None
    finally:
        redis.stop()
