"""Waste heuristics on rollup rows: what is flagged, what is not, and how the saving is computed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from spendstream.common.prices import bundled
from spendstream.rollup import findings


def _row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-4o",
        "feature": "f",
        "task_type": "",
        "route": "",
        "customer_plan": "",
        "customer_id": "",
        "requests": 100,
        "input_tokens": 100_000,
        "output_tokens": 5_000,
        "cached_input_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": Decimal("0.30"),
        "latency_ms_sum": 100_000,
    }
    row.update(fields)
    return row


MONTH = findings.Scale(30)  # a full window: savings are not scaled up


def test_a_premium_model_doing_long_open_ended_work_is_not_a_wrong_tier() -> None:
    long_answers = _row(output_tokens=100 * 2_000, input_tokens=100 * 5_000, cost_usd=Decimal("50"))
    assert findings.wrong_model_tier([long_answers], bundled(), MONTH) == []


def test_an_economy_model_is_never_told_to_go_cheaper() -> None:
    assert (
        findings.wrong_model_tier(
            [_row(model="gpt-4o-mini", task_type="classification", cost_usd=Decimal("100"))], bundled(), MONTH
        )
        == []
    )


def test_wrong_tier_saving_is_cost_minus_the_sibling_price_of_the_same_tokens() -> None:
    row = _row(task_type="classification", cost_usd=Decimal("30"))
    [finding] = findings.wrong_model_tier([row], bundled(), MONTH)
    # gpt-4o-mini: 100000*1.5e-7 + 5000*6e-7 = 0.018
    assert finding.estimated_monthly_saving_usd == Decimal("29.98")
    assert finding.evidence["suggested_model"] == "gpt-4o-mini"


def test_a_new_workspace_has_its_savings_scaled_to_a_month() -> None:
    row = _row(customer_plan="free", customer_id="c1", cost_usd=Decimal("1"))
    [finding] = findings.free_tier_subsidy([row], findings.Scale(3))
    assert finding.estimated_monthly_saving_usd == Decimal("5.00")  # 1 USD in 3 days = 10/month, minus 5


def test_paid_customers_and_anonymous_free_usage_are_not_subsidy_findings() -> None:
    rows = [
        _row(customer_plan="team", customer_id="c1", cost_usd=Decimal("500")),
        _row(customer_plan="free", customer_id="", cost_usd=Decimal("500")),
    ]
    assert findings.free_tier_subsidy(rows, MONTH) == []


def test_big_contexts_with_big_answers_are_not_rag_bloat() -> None:
    row = _row(
        provider="anthropic",
        model="claude-haiku-4-5",
        input_tokens=100 * 20_000,
        output_tokens=100 * 2_000,
        cost_usd=Decimal("3"),
    )
    assert findings.rag_bloat([row], bundled(), MONTH) == []


def test_batchable_without_table_rates_assumes_half_price_only_where_a_batch_api_exists() -> None:
    ours = _row(provider="mistral", model="mistral-large-latest", task_type="backfill", cost_usd=Decimal("10"))
    theirs = _row(provider="acme", model="acme-x", task_type="backfill", cost_usd=Decimal("10"))
    [finding] = findings.batchable([ours, theirs], bundled(), MONTH)
    assert finding.estimated_monthly_saving_usd == Decimal("5.00")
    assert finding.evidence["saving_basis"].startswith("the provider's batch API")
