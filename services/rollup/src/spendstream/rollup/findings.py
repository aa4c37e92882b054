"""Waste findings over the last 30 days, each with its evidence and an estimated monthly saving in USD.

Inputs are the daily rollups only (metadata: models, token sums, tags), never anything about content.
The window is the 30 UTC days ending today; savings over the window are scaled to a month by
30 / (days since the workspace's first usage inside the window), so a workspace two days old is not
understated fifteenfold. Findings under MIN_MONTHLY_SAVING_USD are not reported. The heuristics:

wrong_model_tier
    A premium model (GPT-4o/4.1/5, o1/o3, Claude Opus or Sonnet, Gemini Pro, Mistral Large; on their own API,
    Azure, Bedrock or Vertex) used for a simple job: a `task_type` in SIMPLE_TASKS, or short exchanges
    (on average at most SHORT_OUTPUT_TOKENS out and SHORT_INPUT_TOKENS in). Saving: the group's cost minus
    the same token counts priced at the provider's economy sibling (CHEAPER) from the price table.

free_tier_subsidy
    A customer (`customer_id`) on a free plan (`customer_plan` in FREE_PLANS) costing more than
    FREE_ALLOWANCE_USD a month. Saving: the cost above that allowance (what a usage cap at the allowance, or
    moving the customer to a paid plan, would recover). One finding per customer, largest first.

rag_bloat
    Requests carrying far more context than they produce: on average at least RAG_MIN_INPUT_TOKENS uncached
    input tokens and an input/output ratio of at least RAG_MIN_RATIO, per feature/route and model. Saving:
    half of the uncached input cost (trimming retrieval to the chunks that matter, or caching the stable part
    of the prompt, typically halves it).

batchable_workload
    Non-interactive work (`task_type` in BATCH_TASKS: evaluations, back-fills, enrichment, nightly reports…)
    that tolerates hours of latency yet runs through the synchronous API. Saving: the cost minus the same
    tokens at the table's batch-API rates (`*_batches`), or half the cost where the provider has a batch API
    at 50 % but the table lists no batch rate.

One group can show up under several kinds; their savings overlap and are not meant to be added up blindly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from spendstream.common.prices import Price, PriceTable
from spendstream.rollup.queries import UsageQueries

WINDOW_DAYS = 30
MIN_MONTHLY_SAVING_USD = Decimal("0.50")
CENT = Decimal("0.01")

SIMPLE_TASKS = frozenset(
    {
        "classification",
        "classify",
        "extraction",
        "extract",
        "tagging",
        "routing",
        "intent",
        "moderation",
        "sentiment",
        "translation",
        "formatting",
        "autocomplete",
        "ner",
        "spellcheck",
        "spell_check",
        "keyword_extraction",
        "labeling",
    }
)
SHORT_OUTPUT_TOKENS = 300
SHORT_INPUT_TOKENS = 3000
# (providers, premium-model pattern, economy sibling as the provider names it).
CHEAPER: tuple[tuple[frozenset[str], re.Pattern[str], str], ...] = (
    (frozenset({"openai"}), re.compile(r"^(openai/)?gpt-4o(-\d{4}-\d{2}-\d{2})?$"), "gpt-4o-mini"),
    (frozenset({"openai"}), re.compile(r"^(openai/)?gpt-4\.1(-\d{4}-\d{2}-\d{2})?$"), "gpt-4.1-mini"),
    (frozenset({"openai"}), re.compile(r"^(openai/)?gpt-5(\.\d)?(-\d{4}-\d{2}-\d{2})?$"), "gpt-5-mini"),
    (frozenset({"openai"}), re.compile(r"^(openai/)?(o1|o3)(-\d{4}-\d{2}-\d{2})?$"), "o3-mini"),
    (frozenset({"openai"}), re.compile(r"^(openai/)?gpt-4(-turbo)?(-\d{4}(-\d{2}-\d{2})?)?$"), "gpt-4o-mini"),
    (frozenset({"azure"}), re.compile(r"^(azure/)?gpt-4o(-\d{4}-\d{2}-\d{2})?$"), "gpt-4o-mini"),
    (frozenset({"anthropic"}), re.compile(r"^(anthropic/)?claude-(3-|3-5-|3-7-)?(opus|sonnet)"), "claude-haiku-4-5"),
    (
        frozenset({"bedrock"}),
        re.compile(r"^([a-z-]+\.)?anthropic\.claude-.*(opus|sonnet)"),
        "anthropic.claude-haiku-4-5-20251001-v1:0",
    ),
    (frozenset({"vertex_ai", "vertex"}), re.compile(r"^claude-.*(opus|sonnet)"), "claude-haiku-4-5@20251001"),
    (
        frozenset({"google", "gemini", "vertex_ai", "vertex"}),
        re.compile(r"^(gemini/|vertex_ai/)?gemini-[\d.]+-pro"),
        "gemini-2.5-flash",
    ),
    (frozenset({"mistral"}), re.compile(r"^(mistral/)?mistral-large"), "mistral-small-latest"),
)

FREE_PLANS = frozenset({"free", "trial", "freemium", "free_tier", "hobby"})
FREE_ALLOWANCE_USD = Decimal("5.00")

RAG_MIN_INPUT_TOKENS = 8000
RAG_MIN_RATIO = 40

BATCH_TASKS = frozenset(
    {
        "batch",
        "backfill",
        "back-fill",
        "offline",
        "evaluation",
        "eval",
        "evals",
        "report",
        "reporting",
        "etl",
        "enrichment",
        "embedding",
        "indexing",
        "analytics",
        "nightly",
        "scheduled",
        "bulk",
        "data_labeling",
        "dataset_generation",
        "async",
    }
)
BATCH_API_PROVIDERS = frozenset(
    {"openai", "anthropic", "azure", "google", "gemini", "vertex_ai", "vertex", "bedrock", "mistral"}
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    title: str
    evidence: dict[str, Any]
    estimated_monthly_saving_usd: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "evidence": _plain(self.evidence),
            "estimated_monthly_saving_usd": format(self.estimated_monthly_saving_usd, "f"),
        }


def _plain(evidence: dict[str, Any]) -> dict[str, Any]:
    return {k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in evidence.items()}


def _avg(total: int, count: int) -> int:
    return round(total / count) if count else 0


def _usage_evidence(row: dict[str, Any]) -> dict[str, Any]:
    n = int(row["requests"])
    return {
        "requests": n,
        "cost_usd_30d": Decimal(row["cost_usd"]),
        "avg_input_tokens": _avg(row["input_tokens"], n),
        "avg_output_tokens": _avg(row["output_tokens"], n),
        "avg_latency_ms": _avg(row["latency_ms_sum"], n),
    }


class Scale:
    """Turns a saving over the observed part of the window into a monthly figure."""

    def __init__(self, observed_days: int) -> None:
        self.factor = Decimal(WINDOW_DAYS) / Decimal(max(1, min(WINDOW_DAYS, observed_days)))

    def monthly(self, saving: Decimal) -> Decimal:
        return (saving * self.factor).quantize(CENT)


def _cost_at(row: dict[str, Any], price: Price) -> Decimal:
    # Rollup rows are sums; the long-context tier depends on a single request's size, so use the average one.
    typical = int(row["input_tokens"]) // max(1, int(row["requests"]))
    return price.cost_of(
        int(row["input_tokens"]),
        int(row["output_tokens"]),
        int(row["cached_input_tokens"]),
        int(row["reasoning_tokens"]),
        tier_input=typical,
    )


def wrong_model_tier(rows: list[dict[str, Any]], prices: PriceTable, scale: Scale) -> list[Finding]:
    """Rows grouped by provider, model, feature, task_type."""
    findings = []
    for row in rows:
        n = int(row["requests"])
        simple = row["task_type"] in SIMPLE_TASKS
        short = (
            _avg(row["output_tokens"], n) <= SHORT_OUTPUT_TOKENS and _avg(row["input_tokens"], n) <= SHORT_INPUT_TOKENS
        )
        if not (simple or short):
            continue
        model = str(row["model"]).lower()
        sibling = next(
            (cheap for providers, pattern, cheap in CHEAPER if row["provider"] in providers and pattern.search(model)),
            None,
        )
        cheap_price = prices.lookup(row["provider"], sibling) if sibling else None
        if sibling is None or cheap_price is None:
            continue
        cheaper_cost = _cost_at(row, cheap_price)
        saving = scale.monthly(Decimal(row["cost_usd"]) - cheaper_cost)
        if saving < MIN_MONTHLY_SAVING_USD:
            continue
        reason = f"task_type '{row['task_type']}' is a simple task" if simple else "requests are short"
        findings.append(
            Finding(
                "wrong_model_tier",
                f"{row['model']} for {row['feature'] or 'untagged'} work: {reason}; {sibling} would likely do",
                {
                    "provider": row["provider"],
                    "model": row["model"],
                    "feature": row["feature"],
                    "task_type": row["task_type"],
                    "suggested_model": sibling,
                    **_usage_evidence(row),
                    "cost_usd_30d_at_suggested_model": cheaper_cost.quantize(Decimal("0.000001")),
                },
                saving,
            )
        )
    return findings


def free_tier_subsidy(rows: list[dict[str, Any]], scale: Scale) -> list[Finding]:
    """Rows grouped by customer_plan, customer_id."""
    findings = []
    for row in rows:
        if row["customer_plan"].lower() not in FREE_PLANS or not row["customer_id"]:
            continue
        monthly_cost = scale.monthly(Decimal(row["cost_usd"]))
        saving = monthly_cost - FREE_ALLOWANCE_USD
        if saving < MIN_MONTHLY_SAVING_USD:
            continue
        findings.append(
            Finding(
                "free_tier_subsidy",
                f"free-plan customer {row['customer_id']} costs {monthly_cost} USD a month",
                {
                    "customer_id": row["customer_id"],
                    "customer_plan": row["customer_plan"],
                    "monthly_cost_usd": monthly_cost,
                    "free_allowance_usd": FREE_ALLOWANCE_USD,
                    **_usage_evidence(row),
                },
                saving,
            )
        )
    return sorted(findings, key=lambda f: f.estimated_monthly_saving_usd, reverse=True)


def rag_bloat(rows: list[dict[str, Any]], prices: PriceTable, scale: Scale) -> list[Finding]:
    """Rows grouped by provider, model, feature, route."""
    findings = []
    for row in rows:
        n = int(row["requests"])
        uncached = int(row["input_tokens"]) - int(row["cached_input_tokens"])
        output = int(row["output_tokens"])
        if _avg(uncached, n) < RAG_MIN_INPUT_TOKENS or uncached < RAG_MIN_RATIO * max(1, output):
            continue
        price = prices.lookup(row["provider"], row["model"])
        if price is None:
            continue
        rate = price.rates(int(row["input_tokens"]) // max(1, n)).input
        saving = scale.monthly(uncached * rate / 2)
        if saving < MIN_MONTHLY_SAVING_USD:
            continue
        findings.append(
            Finding(
                "rag_bloat",
                f"{row['feature'] or row['route'] or 'untagged'} sends {_avg(uncached, n)} uncached input tokens "
                f"per request for {_avg(output, n)} out",
                {
                    "provider": row["provider"],
                    "model": row["model"],
                    "feature": row["feature"],
                    "route": row["route"],
                    "input_output_ratio": round(uncached / max(1, output), 1),
                    "cached_input_share": round(int(row["cached_input_tokens"]) / max(1, int(row["input_tokens"])), 3),
                    **_usage_evidence(row),
                },
                saving,
            )
        )
    return findings


def batchable(rows: list[dict[str, Any]], prices: PriceTable, scale: Scale) -> list[Finding]:
    """Rows grouped by provider, model, feature, task_type."""
    findings = []
    for row in rows:
        if row["task_type"] not in BATCH_TASKS:
            continue
        price = prices.lookup(row["provider"], row["model"])
        cost = Decimal(row["cost_usd"])
        if price is not None and price.batch_input is not None and price.batch_output is not None:
            uncached = int(row["input_tokens"]) - int(row["cached_input_tokens"])
            at_batch = uncached * price.batch_input + int(row["output_tokens"]) * price.batch_output
            at_batch += int(row["cached_input_tokens"]) * (price.cache_read or price.batch_input)
            basis = "the price table's batch-API rates"
            window_saving = cost - at_batch
        elif row["provider"] in BATCH_API_PROVIDERS:
            basis = "the provider's batch API at 50 % of the synchronous price"
            window_saving = cost / 2
        else:
            continue
        saving = scale.monthly(window_saving)
        if saving < MIN_MONTHLY_SAVING_USD:
            continue
        findings.append(
            Finding(
                "batchable_workload",
                f"'{row['task_type']}' work on {row['model']} runs synchronously; a batch API would cost less",
                {
                    "provider": row["provider"],
                    "model": row["model"],
                    "feature": row["feature"],
                    "task_type": row["task_type"],
                    "saving_basis": basis,
                    **_usage_evidence(row),
                },
                saving,
            )
        )
    return findings


def find(queries: UsageQueries, prices: PriceTable, workspace_id: str, today: date) -> dict[str, Any]:
    """Every finding for a workspace over the 30 days ending `today`, largest saving first."""
    start = today - timedelta(days=WINDOW_DAYS - 1)
    first = queries.first_day(workspace_id, start, today)
    if first is None:
        return {
            "workspace_id": workspace_id,
            "start": start,
            "end": today,
            "findings": [],
            "total_estimated_monthly_saving_usd": "0.00",
        }
    scale = Scale((today - first).days + 1)
    by_model_task, by_customer, by_route = queries.group_sets(
        workspace_id,
        start,
        today,
        (
            ("provider", "model", "feature", "task_type"),
            ("customer_plan", "customer_id"),
            ("provider", "model", "feature", "route"),
        ),
    )
    findings = [
        *wrong_model_tier(by_model_task, prices, scale),
        *free_tier_subsidy(by_customer, scale),
        *rag_bloat(by_route, prices, scale),
        *batchable(by_model_task, prices, scale),
    ]
    findings.sort(key=lambda f: (-f.estimated_monthly_saving_usd, f.kind, f.title))
    total = sum((f.estimated_monthly_saving_usd for f in findings), Decimal("0.00"))
    return {
        "workspace_id": workspace_id,
        "start": start,
        "end": today,
        "observed_days": (today - first).days + 1,
        "findings": [f.as_dict() for f in findings],
        "total_estimated_monthly_saving_usd": format(total, "f"),
    }
