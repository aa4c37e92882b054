"""The report: one row per figure, printed as a Markdown table next to its target and its limit."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from bench.stats import Spread

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Row:
    """One figure. `share` is how close ours comes to the limit: 1.0 means at the limit, whichever way is better."""

    figure: str
    unit: str
    ours: Spread
    better: Better
    target: float | None = None
    limit: float | None = None
    limit_source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def share(self) -> float | None:
        if self.limit is None or not self.ours.median or math.isnan(self.ours.median):
            return None
        return self.ours.median / self.limit if self.better == "higher" else self.limit / self.ours.median

    @property
    def met(self) -> bool | None:
        if self.target is None or math.isnan(self.ours.median):
            return None
        return self.ours.median >= self.target if self.better == "higher" else self.ours.median < self.target


def _num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


HEADER = (
    "figure",
    "unit",
    "ours (median)",
    "min – max (reps)",
    "target",
    "met",
    "limit",
    "limit: what",
    "share of limit",
)


def render(rows: list[Row]) -> str:
    """A Markdown table; `share of limit` is ours/limit for rates and limit/ours for times."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        target = "n/a" if row.target is None else ("≥ " if row.better == "higher" else "< ") + _num(row.target)
        met = {None: "n/a", True: "yes", False: "no"}[row.met]
        share = "n/a" if row.share is None else f"{row.share:.3f}"
        cells = (
            row.figure,
            row.unit,
            _num(row.ours.median),
            f"{_num(row.ours.low)} – {_num(row.ours.high)} ({row.ours.n})",
            target,
            met,
            _num(row.limit),
            row.limit_source or "n/a",
            share,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_json(rows: list[Row], meta: dict[str, object]) -> str:
    return json.dumps(
        {"meta": meta, "rows": [{**asdict(r), "share": r.share, "met": r.met} for r in rows]}, indent=2, default=str
    )
