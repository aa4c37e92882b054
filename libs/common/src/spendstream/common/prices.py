"""Cost from the LiteLLM community price table when an event reports none.

Needed by rollup (stored cost) and alerts (live spend), so it lives here (moved on its second use); the
table ships in `common/data/`. Prices are per token in USD; arithmetic is Decimal so sums stay exact to the cent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from spendstream.common.events import UsageEvent

BUNDLED = "litellm_model_prices.json"
_DATE_SUFFIX = re.compile(r"(-|@)(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$|-v\d+(:\d+)?$|-latest$")
# Providers whose events name models the way LiteLLM's table keys them with a prefix.
_PROVIDER_PREFIXES = {"google": ("gemini", "vertex_ai"), "azure": ("azure",), "bedrock": ("bedrock",),
                      "mistral": ("mistral",), "anthropic": ("anthropic",), "openai": ("openai",)}


@dataclass(frozen=True, slots=True)
class Price:
    input: Decimal
    output: Decimal
    cache_read: Decimal | None
    reasoning: Decimal | None

    def cost(self, event: UsageEvent) -> Decimal:
        """Cost of one event. `input_tokens` includes cached ones and `output_tokens` includes reasoning."""
        cached = event.cached_input_tokens or 0
        reasoning = event.reasoning_tokens or 0
        cost = (event.input_tokens - cached) * self.input
        cost += cached * (self.cache_read if self.cache_read is not None else self.input)
        if self.reasoning is not None:
            cost += (event.output_tokens - reasoning) * self.output + reasoning * self.reasoning
        else:
            cost += event.output_tokens * self.output
        return cost.quantize(Decimal("0.000000001"))


def _dec(value: Any) -> Decimal | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(repr(value))  # repr keeps the shortest exact decimal of the float (1.5e-07, not 1.49…)
    return None


class PriceTable:
    def __init__(self, raw: dict[str, Any]) -> None:
        self._prices: dict[str, Price] = {}
        for name, entry in raw.items():
            if not isinstance(entry, dict) or name == "sample_spec":
                continue
            inp, out = _dec(entry.get("input_cost_per_token")), _dec(entry.get("output_cost_per_token"))
            if inp is None or out is None:
                continue
            self._prices[name.lower()] = Price(inp, out, _dec(entry.get("cache_read_input_token_cost")),
                                               _dec(entry.get("output_cost_per_reasoning_token")))

    def __len__(self) -> int:
        return len(self._prices)

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        if path is None:
            text = resources.files("spendstream.common").joinpath("data", BUNDLED).read_text()
        else:
            text = path.read_text()
        return cls(json.loads(text))

    def lookup(self, provider: str, model: str) -> Price | None:
        """The entry for a model, trying provider prefixes and dropping date or version suffixes."""
        model = model.lower()
        candidates = [model]
        if "/" in model:
            candidates.append(model.split("/", 1)[1])
        stripped = _DATE_SUFFIX.sub("", candidates[-1])
        if stripped != candidates[-1]:
            candidates.append(stripped)
        for name in list(candidates):
            for prefix in _PROVIDER_PREFIXES.get(provider, (provider,)):
                candidates.append(f"{prefix}/{name}")
        for name in candidates:
            price = self._prices.get(name)
            if price is not None:
                return price
        return None


@lru_cache(maxsize=1)
def bundled() -> PriceTable:
    return PriceTable.load()
