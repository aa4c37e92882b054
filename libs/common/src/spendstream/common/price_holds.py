"""Adding a price version: validate a fetched table, decide whether it must wait for an admin, approve it.

A new table is compared with the version in force on its effective day. It is HELD when it
  * drops a price to zero (a field that was above zero is zero),
  * moves a price by more than 10x up or down (MOVE_LIMIT),
  * removes a model in use: a (provider, model) with events in the last days that the current table prices
    and the new one does not (rollup knows them); without that knowledge (the CLI) any removed table key holds.
A table that prices the same as the one in force adds nothing. A refresh and the CLI share this module, so the
same table gets the same verdict wherever it comes from.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Collection
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

from spendstream.common.pricebook import (
    HoldReason,
    PriceBook,
    PriceVersion,
    VersionRecord,
    digest_of,
    parse_table,
    version_id,
)
from spendstream.common.prices import Price, PriceTable
from spendstream.common.topics import PRICE_TABLE_MAX_BYTES

MIN_PRICED_MODELS = 50  # a truncated or wrong download must not become a version
MOVE_LIMIT = Decimal(10)
KEPT_REASONS = 100  # stored with the version; the total is stored too


def public_source(source: str) -> str:
    """Where a table came from, fit to store and show: a URL without credentials or query, a file's name."""
    if source.startswith(("http://", "https://")):
        parts = urlsplit(source)
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"[:512]
    return f"file:{Path(source).name}"[:512]


def read_source(source: str, timeout: float = 60.0) -> bytes:
    """The bytes of a table at an http(s) URL or a file path, at most PRICE_TABLE_MAX_BYTES (else ValueError)."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
            data: bytes = response.read(PRICE_TABLE_MAX_BYTES + 1)
    else:
        with Path(source).open("rb") as fh:
            data = fh.read(PRICE_TABLE_MAX_BYTES + 1)
    if len(data) > PRICE_TABLE_MAX_BYTES:
        raise ValueError(f"price table is larger than {PRICE_TABLE_MAX_BYTES} bytes")
    return data


def validated(raw: bytes, source: str) -> PriceTable:
    """The table, or ValueError: not JSON, not an object of models, or too few priced models."""
    if len(raw) > PRICE_TABLE_MAX_BYTES:
        raise ValueError(f"price table is larger than {PRICE_TABLE_MAX_BYTES} bytes")
    table = parse_table(raw, source)
    if len(table) < MIN_PRICED_MODELS:
        raise ValueError(f"price table {source} prices {len(table)} models per token (fewer than {MIN_PRICED_MODELS})")
    return table


def price_fields(price: Price) -> dict[str, Decimal]:
    """Every per-token price of an entry, by the table's own name (`output_cost_per_token`,
    `cache_creation_input_token_cost_above_1hr`, `input_cost_per_token_above_200k_tokens_priority`, ...); limits
    such as `max_input_tokens` are not prices."""
    return {name: value for name, value in price.entry.items() if "cost" in name and "token" in name}


def same_prices(a: PriceTable, b: PriceTable) -> bool:
    """Whether two tables price every token of every model alike (other fields may differ)."""
    if len(a) != len(b):
        return False
    for key, price in a.items():
        other = b.get(key)
        if other is None or price_fields(other) != price_fields(price):
            return False
    return True


def hold_reasons(current: PriceTable, new: PriceTable, in_use: Collection[tuple[str, str]] | None) -> list[HoldReason]:
    """Why `new` may not replace `current` without an admin (the module docstring); empty when it may."""
    reasons: list[HoldReason] = []
    for key, old_price in sorted(current.items()):
        new_price = new.get(key)
        if new_price is None:
            if in_use is None:
                reasons.append(HoldReason(kind="removed", key=key))
            continue
        new_fields = price_fields(new_price)
        for name, old in price_fields(old_price).items():
            value = new_fields.get(name)
            if value is None or old <= 0:
                continue
            if value == 0:
                reasons.append(HoldReason(kind="zero", key=key, field=name, old=str(old), new=str(value)))
            elif value > old * MOVE_LIMIT or old > value * MOVE_LIMIT:
                reasons.append(HoldReason(kind="moved_10x", key=key, field=name, old=str(old), new=str(value)))
    for provider, model in sorted(in_use or ()):
        if current.resolve(provider, model) is not None and new.resolve(provider, model) is None:
            reasons.append(HoldReason(kind="removed_in_use", key=f"{provider}/{model}"))
    return reasons


def propose(
    book: PriceBook,
    raw: bytes,
    source: str,
    effective_from: date,
    in_use: Collection[tuple[str, str]] | None,
    now: datetime,
) -> VersionRecord | None:
    """The version `raw` would add from the UTC day `effective_from`, active or held; None when it would change
    nothing (the same version exists or waits, or it prices as the version in force then). ValueError when the
    table is not valid (`validated`)."""
    public = public_source(source)
    table = validated(raw, public)
    day = effective_from
    digest = digest_of(raw)
    vid = version_id(day, digest)
    if book.version(vid) is not None or any(v.digest == digest for v in book.held()):
        return None
    _, current = book.table_at(day)
    if same_prices(current, table):
        return None
    reasons = hold_reasons(current, table, in_use)
    meta = PriceVersion(
        version_id=vid,
        effective_from=day,
        created_at=now,
        source=public,
        digest=digest,
        models=len(table),
        status="held" if reasons else "active",
        hold_reasons=reasons[:KEPT_REASONS],
        hold_reasons_total=len(reasons),
    )
    return VersionRecord(meta, raw, table)


def approved(book: PriceBook, vid: str, by: str, now: datetime) -> VersionRecord:
    """The held version `vid`, active: to publish under the same key. KeyError when no such version is held."""
    record = book.version(vid)
    if record is None or record.meta.status != "held":
        raise KeyError(vid)
    return record.with_meta(record.meta.model_copy(update={"status": "active", "approved_by": by, "approved_at": now}))
