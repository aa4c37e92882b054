"""Cost from the LiteLLM community price table when an event reports none.

Shared since its second use (rollup stores costs, alerts counts live spend): the table ships here
(`data/litellm_model_prices.json`) and is version 0 of the price book (pricebook.py), which adds dated versions
and tenant rates.
Prices are per token in USD; arithmetic is Decimal so sums stay exact to the nano-dollar.

Model names arrive in many spellings; `PriceTable.lookup` resolves, in order:
  provider namespace first (`azure/gpt-4o` for provider azure, `gemini/…` for google, `vertex_ai/…`), then the
  bare name; a provider prefix in the name (`anthropic/claude-…`, `bedrock/us-east-1/anthropic.claude-…`);
  resource paths (`projects/p/locations/l/publishers/google/models/gemini-2.5-pro`); Bedrock cross-region
  inference profiles (`us.`, `eu.`, `apac.`, `global.` …); fine-tune ids (`ft:gpt-4o-mini-2024-07-18:org::id`);
  and finally date or version suffixes (`-2024-07-18`, `-20241022`, `@20241022`, `@default`, `-v2:0`, `-latest`).
"""

from __future__ import annotations

import json
import re
from collections.abc import ItemsView
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

BUNDLED = "litellm_model_prices.json"
NANO = Decimal("0.000000001")
_SUFFIXES = (
    re.compile(r"@(\d{8}|default|latest|\d{3})$"),
    re.compile(r"-v\d+(:\d+)?$"),
    re.compile(r":\d+$"),
    re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$"),
    re.compile(r"-\d{2}-(\d{2}|\d{4})$"),
    re.compile(r"-(latest|preview)$"),
    re.compile(r"-\d{3,4}$"),
)
_REGION_PROFILE = re.compile(r"^(us|eu|apac|au|jp|ca|us-gov|global)\.(?=[a-z]+\.)")
_RESOURCE_PATH = re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/[^/]+/models/")
_TIER = re.compile(r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost)_above_(\d+)k_tokens$")
# Where the table files a provider's models, most specific first; "" is the bare name.
NAMESPACES: dict[str, tuple[str, ...]] = {
    "openai": ("", "openai/"),
    "anthropic": ("", "anthropic/"),
    "azure": ("azure/", ""),
    "google": ("gemini/", "", "vertex_ai/"),
    "gemini": ("gemini/", ""),
    "vertex_ai": ("vertex_ai/", ""),
    "vertex": ("vertex_ai/", ""),
    "bedrock": ("", "bedrock/", "bedrock/converse/"),
    "mistral": ("mistral/", ""),
    "deepseek": ("deepseek/", ""),
    "xai": ("xai/", ""),
    "groq": ("groq/", ""),
    "cohere": ("cohere/", ""),
    "together": ("together_ai/", ""),
    "fireworks": ("fireworks_ai/", ""),
    "perplexity": ("perplexity/", ""),
}


class TokenCounts(Protocol):
    """The token counts of one call, as a usage event carries them."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cached_input_tokens(self) -> int | None: ...
    @property
    def reasoning_tokens(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Rates:
    input: Decimal
    output: Decimal
    cache_read: Decimal | None
    reasoning: Decimal | None


@dataclass(frozen=True, slots=True)
class Price:
    """One table entry: base rates, optional long-context tiers, optional batch-API rates."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    reasoning: Decimal | None = None
    # (threshold in input tokens, rates): above the threshold the whole request is billed at those rates.
    tiers: tuple[tuple[int, Rates], ...] = field(default=())
    batch_input: Decimal | None = None
    batch_output: Decimal | None = None
    _base: Rates = field(init=False, repr=False, compare=False)
    _tiers_desc: tuple[tuple[int, Rates], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once: rollup prices every event without a reported cost (frozen, hence object.__setattr__).
        object.__setattr__(self, "_base", Rates(self.input, self.output, self.cache_read, self.reasoning))
        object.__setattr__(self, "_tiers_desc", tuple(sorted(self.tiers, reverse=True)))

    def rates(self, input_tokens: int) -> Rates:
        for threshold, tier in self._tiers_desc:
            if input_tokens > threshold:
                return tier
        return self._base

    def cost_of(
        self, input_tokens: int, output_tokens: int, cached: int = 0, reasoning: int = 0, tier_input: int | None = None
    ) -> Decimal:
        """Cost of one call. `input_tokens` includes cached ones and `output_tokens` includes reasoning.

        For a sum of calls pass the size of a typical single call as `tier_input` (tiers are per request)."""
        r = self.rates(input_tokens if tier_input is None else tier_input)
        cost = (input_tokens - cached) * r.input
        cost += cached * (r.cache_read if r.cache_read is not None else r.input)
        if r.reasoning is not None:
            cost += (output_tokens - reasoning) * r.output + reasoning * r.reasoning
        else:
            cost += output_tokens * r.output
        return cost.quantize(NANO)

    def cost(self, event: TokenCounts) -> Decimal:
        return self.cost_of(
            event.input_tokens, event.output_tokens, event.cached_input_tokens or 0, event.reasoning_tokens or 0
        )


def _dec(value: Any) -> Decimal | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(repr(value))  # repr keeps the shortest exact decimal of the float (1.5e-07, not 1.49…)
    return None


def _price(entry: dict[str, Any]) -> Price | None:
    inp, out = _dec(entry.get("input_cost_per_token")), _dec(entry.get("output_cost_per_token"))
    if inp is None or out is None:
        return None
    cache_read = _dec(entry.get("cache_read_input_token_cost"))
    reasoning = _dec(entry.get("output_cost_per_reasoning_token"))
    thresholds: dict[int, dict[str, Decimal]] = {}
    for key, value in entry.items():
        match, number = _TIER.match(key), _dec(value)
        if match and number is not None:
            thresholds.setdefault(int(match.group(2)) * 1000, {})[match.group(1)] = number
    tiers = tuple(
        (
            t,
            Rates(
                v.get("input_cost_per_token", inp),
                v.get("output_cost_per_token", out),
                v.get("cache_read_input_token_cost", cache_read),
                reasoning,
            ),
        )
        for t, v in sorted(thresholds.items())
    )
    return Price(
        inp,
        out,
        cache_read,
        reasoning,
        tiers,
        _dec(entry.get("input_cost_per_token_batches")),
        _dec(entry.get("output_cost_per_token_batches")),
    )


def _strip_once(name: str) -> str | None:
    for pattern in _SUFFIXES:
        stripped = pattern.sub("", name)
        if stripped != name and stripped:
            return stripped
    return None


def _spellings(model: str) -> list[str]:
    """The names a model may be filed under, most specific first (see the module docstring)."""
    name = _RESOURCE_PATH.sub("", model.lower())
    forms = [name]
    if name.startswith("ft:"):
        forms.append("ft:" + name.split(":")[1])
        forms.append(name.split(":")[1])
    parts = name.split("/")
    forms += ["/".join(parts[i:]) for i in range(1, len(parts))]
    for form in list(forms):
        unprofiled = _REGION_PROFILE.sub("", form)
        if unprofiled != form:
            forms.append(unprofiled)
    for form in list(forms):
        stripped = _strip_once(form)
        while stripped is not None:
            forms.append(stripped)
            stripped = _strip_once(stripped)
    return list(dict.fromkeys(forms))


class PriceTable:
    def __init__(self, raw: dict[str, Any], source: str = "bundled") -> None:
        self.source = source
        self._prices: dict[str, Price] = {}
        self._resolved: dict[tuple[str, str], tuple[str, Price] | None] = {}
        for name, entry in raw.items():
            if not isinstance(entry, dict) or name == "sample_spec":
                continue
            price = _price(entry)
            if price is not None:
                self._prices[name.lower()] = price

    def __len__(self) -> int:
        return len(self._prices)

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """The table at `path`, or the bundled copy; raises ValueError when it is not a LiteLLM price table."""
        if path is None:
            text, source = resources.files("spendstream.common").joinpath("data", BUNDLED).read_text(), "bundled"
        else:
            text, source = path.read_text(), str(path)
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"price table {source} is not JSON") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"price table {source} is not a JSON object of models")
        table = cls(raw, source)
        if len(table) == 0:
            raise ValueError(f"price table {source} prices no model per token")
        return table

    def resolve(self, provider: str, model: str) -> tuple[str, Price] | None:
        """The table key and price an event's (provider, model) resolves to, or None for an unpriced model."""
        cache_key = (provider, model)
        if cache_key in self._resolved:
            return self._resolved[cache_key]
        found: tuple[str, Price] | None = None
        namespaces = NAMESPACES.get(provider, (f"{provider}/", ""))
        for name in _spellings(model):
            for namespace in namespaces:
                price = self._prices.get(namespace + name)
                if price is not None:
                    found = (namespace + name, price)
                    break
            if found:
                break
        if len(self._resolved) < 100_000:  # the set of models in use is small; the bound guards against abuse
            self._resolved[cache_key] = found
        return found

    def lookup(self, provider: str, model: str) -> Price | None:
        found = self.resolve(provider, model)
        return found[1] if found else None

    def get(self, key: str) -> Price | None:
        return self._prices.get(key.lower())

    def items(self) -> ItemsView[str, Price]:
        """Every priced table key (lower case) and its price."""
        return self._prices.items()


@lru_cache(maxsize=1)
def bundled() -> PriceTable:
    return PriceTable.load()
