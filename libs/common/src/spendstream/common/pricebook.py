"""The price book: dated versions of the price table and tenants' negotiated rates, and the one pricing function.

Every service that computes a cost (rollup stores it, alerts counts it, re-pricing corrects it) calls
`PriceBook.price` (or `PriceBook.cost`, which passes a reported cost through), so they agree to the nano-dollar.

Versions. Each version is a whole LiteLLM table and the UTC day from which it holds; an event is priced by the
active version in force on its UTC day: the one with the latest `effective_from` at or before that day (the
later-created one when two share a day). Version "0", the bundled copy, holds from the beginning. A version is
`held` (not used) until an admin approves it (price_holds.py says what holds one).

Tenant rates. A workspace's rate applies to its events of one provider (or any) whose model matches a glob
(case-insensitive), from a UTC day: a fixed per-token rate (input, output, cached input, cache write), or a
discount or markup in percent of the table's price (service tier, long-context tier and all, as the table prices
the call). A fixed rate is the whole price: every cache write (the one-hour part too) at its cache-write rate,
reasoning as output, whatever the tier. Among the rates of the workspace that match an event and
are in force on its day, the most specific wins: an exact model name over a glob, a longer glob over a shorter,
one naming a provider over one that does not; then the later `effective_from`, then the later `created_at`.

The source of every computed cost (`ref`): `table:<version id>`, `rate:<rate id>` for a fixed rate, or
`rate:<rate id>/table:<version id>` for a percent of a table's price; "" for a reported or unknown cost.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Annotated, Literal, Protocol

import lz4.frame  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from spendstream.common.prices import NANO, Price, PriceTable, TokenCounts, bundled

BASE_VERSION_ID = "0"
VersionStatus = Literal["active", "held"]
HoldKind = Literal["zero", "removed", "removed_in_use", "moved_10x"]
RateKind = Literal["fixed", "discount", "markup"]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
# Per-token USD: non-negative, at most 1 USD a token, at most 18 decimals.
TokenRate = Annotated[Decimal, Field(ge=0, le=1, decimal_places=18)]
_MEMO_LIMIT = 100_000  # (workspace, provider, model, day) quotes kept per book state; the set in use is small


class HoldReason(BaseModel):
    """Why a fetched table is held: one price (or model) and what would change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: HoldKind
    key: str  # the table key, or "provider/model" of a model in use
    field: str | None = None  # the table's price field (e.g. "output_cost_per_token") for zero and moved_10x
    old: str | None = None
    new: str | None = None


class PriceVersion(BaseModel):
    """A version's metadata, travelling with its table (PriceVersionCodec)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version_id: Identifier
    effective_from: date
    created_at: datetime
    source: str = Field(max_length=512)  # "bundled", "file:<name>", or a URL without its query
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")  # SHA-256 of the table's bytes
    models: int = Field(ge=0)
    status: VersionStatus
    hold_reasons: list[HoldReason] = Field(default_factory=list, max_length=100)
    hold_reasons_total: int = 0
    approved_by: str | None = None
    approved_at: datetime | None = None


class VersionRecord:
    """A record of `pricing.versions.v1`: the metadata and the table.

    The table's JSON is kept LZ4-compressed (~300 KB for LiteLLM's ~3 MB) and parsed on first use: a replica
    replays every version, but prices with the few in force on the days it sees."""

    __slots__ = ("_packed", "_table", "meta")

    def __init__(self, meta: PriceVersion, raw: bytes, table: PriceTable | None = None) -> None:
        self.meta = meta
        self._packed: bytes = lz4.frame.compress(raw)
        self._table = table

    @property
    def raw(self) -> bytes:
        data: bytes = lz4.frame.decompress(self._packed)
        return data

    @property
    def table(self) -> PriceTable:
        # Two threads may both parse on first use; either result is the same table.
        if self._table is None:
            self._table = parse_table(self.raw, self.meta.source)
        return self._table

    def with_meta(self, meta: PriceVersion) -> VersionRecord:
        """The same table under other metadata (an approval)."""
        record = VersionRecord.__new__(VersionRecord)
        record.meta, record._packed, record._table = meta, self._packed, self._table
        return record


def version_id(effective_from: date, digest: str) -> str:
    """Content-addressed: the same table from the same day is the same version."""
    return f"{effective_from.isoformat()}.{digest[:12]}"


def digest_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class PriceVersionCodec:
    """`pricing.versions.v1` values: the metadata's JSON, a newline, the table's JSON as fetched (LiteLLM's own
    format, compressed by the producer). Decoding checks the digest; the table was validated before it was
    published (price_holds.propose) and is parsed when first used."""

    def encode(self, record: VersionRecord) -> bytes:
        return record.meta.model_dump_json().encode() + b"\n" + record.raw

    def decode(self, value: bytes) -> VersionRecord:
        head, sep, raw = value.partition(b"\n")
        if not sep:
            raise ValueError("a price version is its metadata, a newline and its table")
        meta = PriceVersion.model_validate_json(head)
        if digest_of(raw) != meta.digest:
            raise ValueError("the table does not match its digest")
        return VersionRecord(meta, raw)


def parse_table(raw: bytes, source: str) -> PriceTable:
    """The LiteLLM table in `raw`, or ValueError naming what is wrong (never quoting it)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"price table {source} is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"price table {source} is not a JSON object of models")
    return PriceTable(data, source)


class TenantRate(BaseModel):
    """A workspace's negotiated rate (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_id: Identifier
    workspace_id: str = Field(min_length=1, max_length=128)
    provider: str | None = Field(default=None, min_length=1, max_length=64)
    model: str = Field(default="*", min_length=1, max_length=256)  # a glob: * ? [seq]
    effective_from: date
    kind: RateKind
    percent: Decimal | None = Field(default=None, gt=0, le=1000, decimal_places=6)
    input: TokenRate | None = None
    output: TokenRate | None = None
    cached_input: TokenRate | None = None  # default: the input rate
    cache_write: TokenRate | None = None  # default: the input rate
    created_at: datetime
    created_by: str = Field(max_length=128)  # the admin key's id, or "cli"

    @model_validator(mode="after")
    def _consistent(self) -> TenantRate:
        per_token = (self.input, self.output, self.cached_input, self.cache_write)
        if self.kind == "fixed":
            if self.input is None or self.output is None:
                raise ValueError("a fixed rate needs input and output per-token prices")
            if self.percent is not None:
                raise ValueError("a fixed rate has no percent")
        else:
            if self.percent is None:
                raise ValueError(f"a {self.kind} needs a percent")
            if any(p is not None for p in per_token):
                raise ValueError(f"a {self.kind} has no per-token prices")
            if self.kind == "discount" and self.percent > 100:
                raise ValueError("a discount is at most 100 percent")
        return self

    def matches(self, provider: str, model: str) -> bool:
        return (self.provider is None or self.provider == provider) and fnmatchcase(model.lower(), self.model.lower())

    def specificity(self) -> tuple[bool, int, bool]:
        literal = sum(1 for c in self.model if c not in "*?[]")
        return (not any(c in self.model for c in "*?["), literal, self.provider is not None)


def rate_key(workspace_id: str, rate_id: str) -> str:
    """The record key of a rate on `pricing.rates.v1`."""
    return f"{workspace_id}/{rate_id}"


class PricedEvent(TokenCounts, Protocol):
    """An event as `PriceBook.cost` reads it (envelope.SealedEvent is one)."""

    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def cost_usd(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Quote:
    """How the calls of one (workspace, provider, model, UTC day) are priced."""

    ref: str
    price: Price | None  # the table's price (None for a fixed rate)
    rate: TenantRate | None
    factor: Decimal | None = None  # a percent rate's multiplier of the table's price

    def cost(self, tokens: TokenCounts) -> Decimal:
        """The cost of one call, exact to the nano-dollar."""
        if self.price is not None:
            if self.factor is None:
                return self.price.cost(tokens)
            # The percent of the exact price, rounded once.
            exact = self.price.exact_cost(
                tokens.input_tokens,
                tokens.output_tokens,
                tokens.cached_input_tokens or 0,
                tokens.reasoning_tokens or 0,
                cache_writes=tokens.cache_creation_input_tokens or 0,
                cache_writes_1h=tokens.cache_creation_1h_input_tokens or 0,
                service_tier=tokens.service_tier,
            )
            return (exact * self.factor).quantize(NANO)
        rate = self.rate
        assert rate is not None and rate.input is not None and rate.output is not None  # TenantRate checks a fixed one
        per_input, per_output = rate.input, rate.output
        per_cached = rate.cached_input if rate.cached_input is not None else per_input
        per_write = rate.cache_write if rate.cache_write is not None else per_input
        cached = tokens.cached_input_tokens or 0
        writes = tokens.cache_creation_input_tokens or 0
        cost = (tokens.input_tokens - cached - writes) * per_input + tokens.output_tokens * per_output
        cost += cached * per_cached + writes * per_write
        return cost.quantize(NANO)


@dataclass(frozen=True, slots=True)
class _Active:
    effective_from: date
    created_at: datetime
    version_id: str
    record: VersionRecord | None  # None: the base table
    base: PriceTable | None = None

    @property
    def table(self) -> PriceTable:
        if self.record is not None:
            return self.record.table
        assert self.base is not None
        return self.base


@dataclass(slots=True)
class _State:
    """One immutable view of the book (but its memo); a change builds a new one, so a reader in another thread
    prices a whole call under one state."""

    active: tuple[_Active, ...]
    starts: tuple[date, ...]
    rates: Mapping[str, tuple[TenantRate, ...]]
    memo: dict[tuple[str, str, str, date], Quote | None] = field(default_factory=dict)


def _utc_day(ts: datetime) -> date:
    return (ts if ts.tzinfo is None else ts.astimezone(UTC)).date()


class PriceBook:
    """Versions and rates, as replayed from `pricing.versions.v1` and `pricing.rates.v1` (price_replica.py), or
    built directly (tests, tools). Changes are applied by one thread; pricing may run in any."""

    def __init__(self, base: PriceTable | None = None) -> None:
        self._base = _Active(date.min, datetime.min.replace(tzinfo=UTC), BASE_VERSION_ID, None, base or bundled())
        self._versions: dict[str, VersionRecord] = {}
        self._rates: dict[str, dict[str, TenantRate]] = {}
        self._state = self._build()

    @classmethod
    def of(cls, prices: PriceBook | PriceTable) -> PriceBook:
        """`prices` itself, or a book of that one table (tools and tests that price with a single table)."""
        return prices if isinstance(prices, PriceBook) else cls(prices)

    # -- pricing -------------------------------------------------------------------------------------------

    def price(
        self, workspace_id: str, provider: str, model: str, ts: datetime, tokens: TokenCounts
    ) -> tuple[Decimal | None, str]:
        """The computed cost of one call and its source ref; (None, "") for a model no table or rate prices."""
        quote = self.quote(workspace_id, provider, model, _utc_day(ts))
        if quote is None:
            return None, ""
        return quote.cost(tokens), quote.ref

    def cost(self, workspace_id: str, event: PricedEvent) -> tuple[Decimal | None, str]:
        """The event's cost: the reported one (ref ""), else `price`."""
        if event.cost_usd is not None:
            return Decimal(event.cost_usd), ""
        return self.price(workspace_id, event.provider, event.model, event.timestamp, event)

    def quote(self, workspace_id: str, provider: str, model: str, day: date) -> Quote | None:
        """How (workspace, provider, model) is priced on a UTC day; None when it is not priced."""
        state = self._state
        key = (workspace_id, provider, model, day)
        if key in state.memo:
            return state.memo[key]
        version = state.active[bisect.bisect_right(state.starts, day) - 1]
        rate = _rate_for(state.rates.get(workspace_id, ()), provider, model, day)
        price = version.table.lookup(provider, model)
        table_ref = f"table:{version.version_id}"
        quote: Quote | None
        if rate is None:
            quote = Quote(table_ref, price, None) if price is not None else None
        elif rate.kind == "fixed":
            quote = Quote(f"rate:{rate.rate_id}", None, rate)
        elif price is None:
            quote = None  # a percent of no price is no price
        else:
            assert rate.percent is not None
            sign = -1 if rate.kind == "discount" else 1
            factor = 1 + sign * rate.percent / 100
            quote = Quote(f"rate:{rate.rate_id}/{table_ref}", price, rate, factor)
        if len(state.memo) < _MEMO_LIMIT:
            state.memo[key] = quote
        return quote

    def table_at(self, day: date) -> tuple[str, PriceTable]:
        """The active version in force on `day`: its id and table."""
        state = self._state
        version = state.active[bisect.bisect_right(state.starts, day) - 1]
        return version.version_id, version.table

    # -- contents ------------------------------------------------------------------------------------------

    def versions(self) -> list[PriceVersion]:
        """Every version but the bundled one, active and held, in order of effect."""
        return sorted((r.meta for r in self._versions.values()), key=_order)

    def version(self, version_id: str) -> VersionRecord | None:
        return self._versions.get(version_id)

    def held(self) -> list[PriceVersion]:
        return [v for v in self.versions() if v.status == "held"]

    def rates(self, workspace_id: str) -> list[TenantRate]:
        return sorted(self._rates.get(workspace_id, {}).values(), key=lambda r: (r.effective_from, r.rate_id))

    def rate(self, workspace_id: str, rate_id: str) -> TenantRate | None:
        return self._rates.get(workspace_id, {}).get(rate_id)

    # -- changes (replay) ----------------------------------------------------------------------------------

    def put_version(self, record: VersionRecord) -> None:
        self._versions[record.meta.version_id] = record
        self._state = self._build()

    def drop_version(self, version_id: str) -> None:
        if self._versions.pop(version_id, None) is not None:
            self._state = self._build()

    def put_rate(self, rate: TenantRate) -> None:
        self._rates.setdefault(rate.workspace_id, {})[rate.rate_id] = rate
        self._state = self._build()

    def drop_rate(self, workspace_id: str, rate_id: str) -> None:
        rates = self._rates.get(workspace_id, {})
        if rates.pop(rate_id, None) is not None:
            if not rates:
                del self._rates[workspace_id]
            self._state = self._build()

    def _build(self) -> _State:
        active = [self._base] + [
            _Active(r.meta.effective_from, r.meta.created_at, r.meta.version_id, r)
            for r in self._versions.values()
            if r.meta.status == "active"
        ]
        active.sort(key=lambda a: (a.effective_from, a.created_at, a.version_id))
        rates = {ws: tuple(by_id.values()) for ws, by_id in self._rates.items()}
        return _State(tuple(active), tuple(a.effective_from for a in active), rates)


def _order(meta: PriceVersion) -> tuple[date, datetime, str]:
    return (meta.effective_from, meta.created_at, meta.version_id)


def _rate_for(rates: Iterable[TenantRate], provider: str, model: str, day: date) -> TenantRate | None:
    best: TenantRate | None = None
    best_key: tuple[tuple[bool, int, bool], date, datetime] | None = None
    for rate in rates:
        if rate.effective_from > day or not rate.matches(provider, model):
            continue
        key = (rate.specificity(), rate.effective_from, rate.created_at)
        if best_key is None or key > best_key:
            best, best_key = rate, key
    return best
