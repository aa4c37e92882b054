"""Cost from the LiteLLM community price table when an event reports none.

Shared since its second use (rollup stores costs, alerts counts live spend): the table ships here
(`data/litellm_model_prices.json`) and is version 0 of the price book (pricebook.py), which adds dated versions
and tenant rates.
Prices are per token in USD; arithmetic is Decimal so sums stay exact to the nano-dollar.

What a call costs follows LiteLLM's own cost functions over the same table (tests/common/test_prices_oracle.py
holds the two to 1e-9): the uncached input, cache reads (`cache_read_input_token_cost`, else the input rate),
cache writes (`cache_creation_input_token_cost`, else the input rate; the one-hour part at
`cache_creation_input_token_cost_above_1hr`, else the write rate), the output and its reasoning part
(`output_cost_per_reasoning_token`, else the output rate). Above a long-context threshold
(`*_above_200k_tokens` and the like, for each of those rates) the whole call takes that tier's rates. A service
tier takes the `*_flex` / `*_priority` rates where the table has them, each rate falling back to the standard
one; `batch` follows LiteLLM's batch pricing: the `*_batches` rates (with their own long-context tiers), and
without them half the standard input and output rates (cache reads at half their rate, or half the input rate
where the table has none, which LiteLLM bills at zero).

Model names arrive in many spellings; `PriceTable.lookup` resolves, in order:
  provider namespace first (`azure/gpt-4o` for provider azure, `gemini/…` for google, `vertex_ai/…`), then the
  bare name; a provider prefix in the name (`anthropic/claude-…`, `bedrock/us-east-1/anthropic.claude-…`);
  resource paths (`projects/p/locations/l/publishers/google/models/gemini-2.5-pro`); Bedrock cross-region
  inference profiles (`us.`, `eu.`, `apac.`, `global.` …); fine-tune ids (`ft:gpt-4o-mini-2024-07-18:org::id`);
  and finally date or version suffixes (`-2024-07-18`, `-20241022`, `@20241022`, `@default`, `-v2:0`, `-latest`).
"""

from __future__ import annotations

import json
import math
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
# The rates a long-context threshold may change (LiteLLM's `_BATCH_RATE_PREFIXES`), and the one-hour write rate.
_RATE_KEYS = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
)
_HOUR_WRITE = "cache_creation_input_token_cost_above_1hr"
# Key suffixes of the service tiers LiteLLM prices (`fast` is billed as `priority`); any other tier, `default`
# and `scale` included, is priced at the standard rates. Every one of them, and `_batches`, marks a key that is
# not a standard rate.
SERVICE_TIER_SUFFIXES = {
    "flex": "_flex",
    "balanced": "_balanced",
    "priority": "_priority",
    "fast": "_priority",
    "ultrafast": "_ultrafast",
}
_TIER_KEY_SUFFIXES = ("_ultrafast", "_balanced", "_priority", "_flex", "_fast", "_auto")
_NON_STANDARD = (*_TIER_KEY_SUFFIXES, "_batches")
_THRESHOLD_PREFIXES = tuple(f"{key}_above_" for key in _RATE_KEYS)
BATCH = "batch"
_READ = "cache_read_input_token_cost_above_"  # the thresholds of the standard cache-read rate
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
    """The token counts of one call and its service tier, as a usage event carries them."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cached_input_tokens(self) -> int | None: ...
    @property
    def reasoning_tokens(self) -> int | None: ...
    @property
    def cache_creation_input_tokens(self) -> int | None: ...
    @property
    def cache_creation_1h_input_tokens(self) -> int | None: ...
    @property
    def service_tier(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class CallRates:
    """Every per-token rate of one call, each resolved (no rate missing)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    reasoning: Decimal
    # Batch pricing bills reasoning as output, and without a batch rate for reads or writes bills them as input.
    reads_apart: bool = True
    writes_apart: bool = True


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
    # Every numeric entry of the table's record (rates of service tiers, batches, cache writes and their tiers).
    entry: dict[str, Decimal] = field(default_factory=dict, compare=False)
    _base: Rates = field(init=False, repr=False, compare=False)
    _tiers_desc: tuple[tuple[int, Rates], ...] = field(init=False, repr=False, compare=False)
    # (service tier's key suffix or BATCH, long-context thresholds crossed, and for batch those of the standard
    # read rate) -> the call's rates, computed once.
    _call_rates: dict[tuple[str, int, int], CallRates] = field(init=False, repr=False, compare=False)
    _thresholds: dict[str, tuple[tuple[float, str], ...]] = field(init=False, repr=False, compare=False)
    _flat: CallRates | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once: rollup prices every event without a reported cost (frozen, hence object.__setattr__).
        object.__setattr__(self, "_base", Rates(self.input, self.output, self.cache_read, self.reasoning))
        object.__setattr__(self, "_tiers_desc", tuple(sorted(self.tiers, reverse=True)))
        if not self.entry:  # a price made by hand: its rates are its record
            given = {
                "input_cost_per_token": self.input,
                "output_cost_per_token": self.output,
                "cache_read_input_token_cost": self.cache_read,
                "output_cost_per_reasoning_token": self.reasoning,
            }
            self.entry.update({key: rate for key, rate in given.items() if rate is not None})
        object.__setattr__(self, "_call_rates", {})
        object.__setattr__(self, "_thresholds", {})
        # The usual call (standard tier, a model without long-context tiers) skips every lookup.
        flat = _tier_rates(self.entry, "", ()) if not _thresholds_of(self.entry, "") else None
        object.__setattr__(self, "_flat", flat)

    def rates(self, input_tokens: int) -> Rates:
        for threshold, tier in self._tiers_desc:
            if input_tokens > threshold:
                return tier
        return self._base

    def cost_of(
        self,
        input_tokens: int,
        output_tokens: int,
        cached: int = 0,
        reasoning: int = 0,
        tier_input: int | None = None,
        *,
        cache_writes: int = 0,
        cache_writes_1h: int = 0,
        service_tier: str | None = None,
    ) -> Decimal:
        """Cost of one call to the nano-dollar (exact_cost rounded)."""
        return self._exact(
            input_tokens, output_tokens, cached, reasoning, cache_writes, cache_writes_1h, service_tier, tier_input
        ).quantize(NANO)

    def exact_cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cached: int = 0,
        reasoning: int = 0,
        tier_input: int | None = None,
        *,
        cache_writes: int = 0,
        cache_writes_1h: int = 0,
        service_tier: str | None = None,
    ) -> Decimal:
        """Cost of one call, unrounded. `input_tokens` includes the cache reads (`cached`) and the cache writes
        (`cache_writes`, of which `cache_writes_1h` are written for an hour); `output_tokens` includes
        `reasoning`.

        For a sum of calls pass the size of a typical single call as `tier_input` (tiers are per request)."""
        return self._exact(
            input_tokens, output_tokens, cached, reasoning, cache_writes, cache_writes_1h, service_tier, tier_input
        )

    def cost(self, event: TokenCounts) -> Decimal:
        """The cost of an event's call to the nano-dollar."""
        return self._exact(
            event.input_tokens,
            event.output_tokens,
            event.cached_input_tokens or 0,
            event.reasoning_tokens or 0,
            event.cache_creation_input_tokens or 0,
            event.cache_creation_1h_input_tokens or 0,
            event.service_tier,
            None,
        ).quantize(NANO)

    def _exact(
        self,
        input_tokens: int,
        output_tokens: int,
        cached: int,
        reasoning: int,
        writes: int,
        writes_1h: int,
        service_tier: str | None,
        tier_input: int | None,
    ) -> Decimal:
        r = self._flat
        if r is None or service_tier is not None:
            r = self.call_rates(input_tokens if tier_input is None else tier_input, service_tier)
        read = cached if r.reads_apart else 0
        written = writes if r.writes_apart else 0
        cost = (input_tokens - read - written) * r.input
        if read:
            cost += read * r.cache_read
        if written:
            cost += (written - writes_1h) * r.cache_write + writes_1h * r.cache_write_1h
        if reasoning:
            return cost + (output_tokens - reasoning) * r.output + reasoning * r.reasoning
        return cost + output_tokens * r.output

    def call_rates(self, input_tokens: int, service_tier: str | None = None) -> CallRates:
        """The rates of one call of `input_tokens` (cache reads and writes included) on `service_tier`."""
        kind = BATCH if service_tier == BATCH else SERVICE_TIER_SUFFIXES.get((service_tier or "").lower(), "")
        thresholds = self._thresholds.get(kind)
        if thresholds is None:
            thresholds = self._thresholds.setdefault(kind, _thresholds_of(self.entry, kind))
        crossed = sum(1 for t, _ in thresholds if input_tokens > t)
        reads = 0
        if kind == BATCH:  # the standard read rate batch pricing may fall back to has thresholds of its own
            read_thresholds = self._thresholds.get(_READ)
            if read_thresholds is None:
                read_thresholds = self._thresholds.setdefault(_READ, _thresholds_of(self.entry, _READ))
            reads = sum(1 for t, _ in read_thresholds if input_tokens > t)
        found = self._call_rates.get((kind, crossed, reads))
        if found is None:
            if kind == BATCH:
                made = _batch_rates(self.entry, thresholds[:crossed], self._thresholds[_READ][:reads])
            else:
                made = _tier_rates(self.entry, kind, thresholds[:crossed])
            found = self._call_rates.setdefault((kind, crossed, reads), made)
        return found

    def input_breakpoints(self) -> tuple[int, ...]:
        """Every input size above which some rate of this entry may change (its `*_above_<n>_tokens` keys), in
        whole tokens, ascending: between two of them `call_rates` is the same for every size, so re-pricing
        (rollup's repricing.py) reads a call's rates once per interval. (`input_tokens > t` for a whole number of
        tokens is `input_tokens > floor(t)`.)"""
        found = set()
        for key in self.entry:
            if "_above_" in key:
                try:
                    found.add(math.floor(_threshold(key)[0]))
                except ValueError:
                    continue  # not a size (the one-hour write rate's `_above_1hr`)
        return tuple(sorted(found))


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
        {key: number for key, value in entry.items() if (number := _dec(value)) is not None},
    )


def _threshold(key: str) -> tuple[float, str]:
    """The input size above which a `*_above_<n>[k]_tokens` key holds, and its spelling (the last `_above_`)."""
    text = key.rsplit("_above_", 1)[1].split("_tokens")[0]
    return float(text.replace("k", "")) * (1000 if "k" in text else 1), text


def _thresholds_of(entry: dict[str, Decimal], kind: str) -> tuple[tuple[float, str], ...]:
    """The long-context thresholds of a record that a call of `kind` (a tier's key suffix, "" or BATCH) may
    cross, ascending: those of the standard rates and the tier's own (LiteLLM's _get_token_base_cost); for
    batch, those of the `*_batches` rates (its get_batch_cost_rates); for _READ, those of the standard cache-read
    rate (its get_modality_token_cost_key)."""
    if kind == BATCH:
        keys = [k for k in entry if k.endswith("_tokens_batches") and k.startswith(_THRESHOLD_PREFIXES)]
    elif kind == _READ:
        keys = [k for k in entry if k.startswith(_READ) and k.endswith("_tokens")]
    else:
        keys = [
            k
            for k in entry
            if k.startswith(_THRESHOLD_PREFIXES)
            and "_tokens" in k
            and (not k.endswith(_NON_STANDARD) or (kind != "" and k.endswith(kind)))
        ]
    found = set()
    for key in keys:
        try:
            found.add(_threshold(key))
        except ValueError:
            continue  # not a threshold LiteLLM reads either
    return tuple(sorted(found))


def _rate(entry: dict[str, Decimal], key: str, suffix: str) -> Decimal | None:
    """The tier's rate `key + suffix`, else the standard `key` (LiteLLM's get_cost_per_unit)."""
    found = entry.get(key + suffix)
    return entry.get(key) if found is None and suffix else found


def _given(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


def _tier_rates(entry: dict[str, Decimal], suffix: str, crossed: tuple[tuple[float, str], ...]) -> CallRates:
    """The rates of a call on a service tier (its key `suffix`, "" for the standard one) past the `crossed`
    thresholds, as LiteLLM's _get_token_base_cost resolves them: each threshold crossed, lowest first, replaces
    the rates it names for that tier or, failing that, the standard ones."""
    inp = _given(_rate(entry, "input_cost_per_token", suffix), Decimal(0))
    out = _given(_rate(entry, "output_cost_per_token", suffix), Decimal(0))
    write = _rate(entry, "cache_creation_input_token_cost", suffix)
    read = _rate(entry, "cache_read_input_token_cost", suffix)
    hour_key = _HOUR_WRITE + suffix
    for _, text in crossed:
        above = f"_above_{text}_tokens"
        inp = _given(_rate(entry, "input_cost_per_token" + above, suffix), inp)
        out = _given(_rate(entry, "output_cost_per_token" + above, suffix), out)
        tiered_write = _rate(entry, "cache_creation_input_token_cost" + above, suffix)
        write = write if tiered_write is None else tiered_write
        tiered_read = _rate(entry, "cache_read_input_token_cost" + above, suffix)
        read = read if tiered_read is None else tiered_read
        tiered_hour = f"{_HOUR_WRITE}_above_{text}_tokens{suffix}"
        hour_key = tiered_hour if tiered_hour in entry else hour_key
    # A rate the table does not give is the input rate (the write rate for the hour-long writes).
    write = inp if write is None else write
    hour = _rate(entry, hour_key.removesuffix(suffix), suffix)
    # Reasoning: the tier's own reasoning rate; on a tier with its own output rate, that; else the standard
    # reasoning rate; else the output rate.
    reasoning = entry.get("output_cost_per_reasoning_token" + suffix)
    if reasoning is None:
        standard = entry.get("output_cost_per_reasoning_token")
        reasoning = out if (suffix and ("output_cost_per_token" + suffix) in entry) or standard is None else standard
    return CallRates(inp, out, inp if read is None else read, write, write if hour is None else hour, reasoning)


def _batch_rate(entry: dict[str, Decimal], key: str, crossed: tuple[tuple[float, str], ...]) -> Decimal | None:
    """The `key_batches` rate, or that of the highest crossed threshold that has one for `key` (LiteLLM's
    _batch_rate_for_prefix)."""
    for _, text in reversed(crossed):
        if f"{key}_above_{text}_tokens_batches" in entry:
            return entry[f"{key}_above_{text}_tokens_batches"]
    return entry.get(f"{key}_batches")


def _standard_cache_read(entry: dict[str, Decimal], crossed: tuple[tuple[float, str], ...]) -> Decimal | None:
    """The standard cache-read rate of the highest `crossed` threshold (LiteLLM's get_modality_token_cost_key),
    else the base one, else None."""
    for _, text in reversed(crossed):
        if f"{_READ}{text}_tokens" in entry:
            return entry[f"{_READ}{text}_tokens"]
    return entry.get("cache_read_input_token_cost")


def _batch_rates(
    entry: dict[str, Decimal], crossed: tuple[tuple[float, str], ...], reads_crossed: tuple[tuple[float, str], ...]
) -> CallRates:
    """The rates of a batch-API call, as LiteLLM's batch_cost_calculator bills it: reasoning as output; with a
    `*_batches` input rate, reads and writes at their batch rates (reads at the standard read rate, writes at the
    batch input rate without one; either billed as input when the table has no rate for it); without one, half
    the standard rates (no long-context tiers, one write rate)."""
    inp = _batch_rate(entry, "input_cost_per_token", crossed)
    out = _batch_rate(entry, "output_cost_per_token", crossed)
    half = Decimal("0.5")
    output = out if out is not None else _given(entry.get("output_cost_per_token"), Decimal(0)) * half
    if inp is None:
        standard = entry["input_cost_per_token"]
        read = entry.get("cache_read_input_token_cost", standard)
        write = entry.get("cache_creation_input_token_cost", standard)
        return CallRates(standard * half, output, read * half, write * half, write * half, output)
    batch_read = _batch_rate(entry, "cache_read_input_token_cost", crossed)
    read_rate = _standard_cache_read(entry, reads_crossed) if batch_read is None else batch_read
    batch_write = _batch_rate(entry, "cache_creation_input_token_cost", crossed)
    hour = _batch_rate(entry, _HOUR_WRITE, crossed)
    write_rate = inp if batch_write is None else batch_write
    return CallRates(
        inp,
        output,
        inp if read_rate is None else read_rate,
        write_rate,
        write_rate if hour is None else hour,
        output,
        reads_apart=read_rate is not None,
        writes_apart=batch_write is not None or hour is not None,
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
