"""spendstream's client SDK: meter AI calls by metadata only.

`Meter` (a background thread) and `AsyncMeter` (an asyncio task) queue usage events and send them in batches;
`tags(...)` adds tags to every event tracked inside a block. Nothing of a prompt or a completion is ever sent:
each event is checked by spendstream's privacy guard when it is tracked, and refused there (`EventRefused`).
"""

from __future__ import annotations

from spendstream_sdk._version import __version__
from spendstream_sdk.async_meter import AsyncMeter
from spendstream_sdk.base import Tuning
from spendstream_sdk.budgets import BudgetError, BudgetExceeded, BudgetGate, BudgetUnavailable
from spendstream_sdk.context import current_tags, tags
from spendstream_sdk.events import EventRefused
from spendstream_sdk.meter import Meter
from spendstream_sdk.stats import MeterStats

__all__ = [
    "AsyncMeter",
    "BudgetError",
    "BudgetExceeded",
    "BudgetGate",
    "BudgetUnavailable",
    "EventRefused",
    "Meter",
    "MeterStats",
    "Tuning",
    "__version__",
    "current_tags",
    "tags",
]
