"""A LiteLLM callback: one spendstream usage event per successful LiteLLM call, from LiteLLM's own figures.

LiteLLM's SDK::

    import litellm
    from spendstream_sdk.litellm import SpendstreamCallback

    litellm.callbacks = [SpendstreamCallback(meter=meter)]   # or SpendstreamCallback() to read the environment

LiteLLM's proxy (config.yaml), with SPENDSTREAM_URL and SPENDSTREAM_API_KEY in the proxy's environment::

    litellm_settings:
      callbacks: spendstream_sdk.litellm.spendstream_callback

The event is built from LiteLLM's standard logging payload only: the provider, the model, the usage (prompt and
completion tokens, cached, cache-write and reasoning tokens when present), the latency and `response_cost`.
Nothing of the messages or the response is read. A call whose cost LiteLLM could not compute is sent without
`cost_usd`, so spendstream prices it (or lists the model as unknown) instead of storing $0. A call answered from
LiteLLM's own cache reached no provider and is not sent. The callback never raises into LiteLLM: an event the
guard refuses is logged by field and rule and counted in `refused`.

litellm is not a dependency of the SDK (install `spendstream-sdk[litellm]`); only this module imports it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

try:
    from litellm.integrations.custom_logger import CustomLogger
except ImportError as missing:  # the `litellm` extra, not a dependency of the SDK
    raise ImportError("spendstream_sdk.litellm needs LiteLLM: pip install 'spendstream-sdk[litellm]'") from missing

from spendstream_sdk.base import MeterBase
from spendstream_sdk.events import EventRefused
from spendstream_sdk.meter import Meter

log = logging.getLogger("spendstream_sdk")

URL_VARIABLE = "SPENDSTREAM_URL"
API_KEY_VARIABLE = "SPENDSTREAM_API_KEY"
# Tags every event of the callback carries, as `key=value,key=value` (e.g. `environment=prod,feature=gateway`).
TAGS_VARIABLE = "SPENDSTREAM_TAGS"
# The key of a call's LiteLLM `metadata` whose dict of tags the call's event carries (over the fixed ones).
METADATA_TAGS_KEY = "spendstream_tags"

# LiteLLM's provider names that spendstream names otherwise (the one who bills the call).
_PROVIDERS = {
    "gemini": "google",
    "vertex_ai": "google",
    "vertex_ai_beta": "google",
    "azure_ai": "azure",
    "azure_text": "azure",
    "text-completion-openai": "openai",
    "openai_like": "openai",
}
_NOT_A_PROVIDER_CHARACTER = re.compile(r"[^a-z0-9._-]+")
_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def provider_name(litellm_provider: object) -> str:
    """spendstream's provider name for LiteLLM's `custom_llm_provider`."""
    name = str(litellm_provider or "unknown").lower()
    name = _PROVIDERS.get(name, name)
    return _NOT_A_PROVIDER_CHARACTER.sub("-", name).strip("-")[:64] or "unknown"


def parse_tags(text: str) -> dict[str, str]:
    """`key=value,key=value` as a dict (SPENDSTREAM_TAGS)."""
    tags: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            tags[key.strip()] = value.strip()
    return tags


def _int(value: object) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _get(source: object, name: str) -> object:
    """A field of a LiteLLM usage part, whether it is a dict (the payload's usage_object) or an object."""
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def usage_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The event's fields from LiteLLM's standard logging payload (no event id, timestamp or tags)."""
    metadata = payload.get("metadata") or {}
    usage = metadata.get("usage_object") if isinstance(metadata, Mapping) else None
    prompt = _get(usage, "prompt_tokens_details") if usage is not None else None
    completion = _get(usage, "completion_tokens_details") if usage is not None else None
    fields: dict[str, Any] = {
        "provider": provider_name(payload.get("custom_llm_provider")),
        "model": str(payload.get("model") or "unknown"),
        # LiteLLM's prompt_tokens include the cache (it adds Anthropic's cache reads and writes to input_tokens).
        "input_tokens": _int(payload.get("prompt_tokens")) or 0,
        "output_tokens": _int(payload.get("completion_tokens")) or 0,
        "latency_ms": _latency_ms(payload),
    }
    optional: dict[str, object] = {
        "cached_input_tokens": _int(_get(prompt, "cached_tokens")),
        "cache_creation_input_tokens": _int(_get(prompt, "cache_write_tokens"))
        or _int(_get(prompt, "cache_creation_tokens"))
        or _int(_get(usage, "cache_creation_input_tokens")),
        "cache_creation_1h_input_tokens": _int(
            _get(_get(prompt, "cache_creation_token_details"), "ephemeral_1h_input_tokens")
        ),
        "reasoning_tokens": _int(_get(completion, "reasoning_tokens")),
    }
    breakdown = payload.get("cost_breakdown")
    tier = breakdown.get("service_tier") if isinstance(breakdown, Mapping) else None
    if isinstance(tier, str) and tier:
        optional["service_tier"] = tier
    fields.update({name: value for name, value in optional.items() if value})  # a zero part is no part
    cost: object = payload.get("response_cost")
    # A cost LiteLLM failed to compute reads 0 (or None) with its debug information set: that is not a price.
    if (type(cost) is int or type(cost) is float) and math.isfinite(cost) and cost >= 0:
        if not payload.get("response_cost_failure_debug_info"):
            # LiteLLM sums float rates (0.00030000000000000003): the event carries at most 12 decimal places.
            fields["cost_usd"] = round(cost, 12)
    return fields


def _latency_ms(payload: Mapping[str, Any]) -> int:
    start, end = payload.get("startTime"), payload.get("endTime")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)) and end >= start:
        return min(round((end - start) * 1000), 3_600_000)
    return 0


def _event_id(payload: Mapping[str, Any]) -> str | None:
    """LiteLLM's id of the call, so a callback that fires twice for one call is one event on the server."""
    call_id = payload.get("litellm_call_id") or payload.get("id")
    if not isinstance(call_id, str) or not call_id:
        return None
    if _EVENT_ID.match(call_id):
        return call_id
    return hashlib.sha256(call_id.encode()).hexdigest()[:32]


def _timestamp(payload: Mapping[str, Any]) -> datetime | None:
    start = payload.get("startTime")
    return datetime.fromtimestamp(start, UTC) if isinstance(start, (int, float)) else None


class SpendstreamCallback(CustomLogger):
    """A LiteLLM `CustomLogger` that tracks each successful call on a spendstream meter.

    `meter`: the meter to track on; without one, a `Meter` is made on the first event from SPENDSTREAM_URL and
    SPENDSTREAM_API_KEY (the proxy's way). `tags`: tags for every event (default: SPENDSTREAM_TAGS). A call may
    add its own with LiteLLM's `metadata={"spendstream_tags": {...}}`.
    """

    def __init__(self, meter: MeterBase | None = None, tags: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._meter = meter
        self._tags = dict(tags) if tags is not None else parse_tags(os.environ.get(TAGS_VARIABLE, ""))
        self._lock = threading.Lock()
        self.tracked = 0  # events tracked
        self.refused = 0  # events the guard or the event rules refused (logged by field and rule)

    @property
    def meter(self) -> MeterBase | None:
        """The meter events go to (made from the environment on first use when none was given)."""
        if self._meter is None:
            with self._lock:
                if self._meter is None:
                    url, key = os.environ.get(URL_VARIABLE), os.environ.get(API_KEY_VARIABLE)
                    if not url or not key:
                        log.error(
                            "spendstream: %s and %s must be set for the LiteLLM callback",
                            URL_VARIABLE,
                            API_KEY_VARIABLE,
                        )
                        return None
                    self._meter = Meter(url=url, api_key=key)
        return self._meter

    def _record(self, kwargs: Mapping[str, Any]) -> None:
        try:
            payload = kwargs.get("standard_logging_object")
            if not isinstance(payload, Mapping) or payload.get("status", "success") != "success":
                return
            if payload.get("cache_hit") is True:
                return  # answered from LiteLLM's cache: no provider call
            meter = self.meter
            if meter is None:
                return
            tags = dict(self._tags)
            call_tags = _call_tags(kwargs)
            if call_tags:
                tags.update(call_tags)
            meter.track(
                **usage_fields(payload),
                timestamp=_timestamp(payload),
                event_id=_event_id(payload),
                tags=tags,
            )
            with self._lock:
                self.tracked += 1
        except EventRefused as refused:
            with self._lock:
                self.refused += 1
            log.warning("spendstream: LiteLLM call not metered: %s %s", refused.field, refused.code)
        except Exception as exc:  # never into LiteLLM's call path
            log.error("spendstream: LiteLLM callback failed: %s", type(exc).__name__)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record(kwargs)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record(kwargs)


def _call_tags(kwargs: Mapping[str, Any]) -> dict[str, str]:
    params = kwargs.get("litellm_params") or {}
    metadata = params.get("metadata") if isinstance(params, Mapping) else None
    tags = metadata.get(METADATA_TAGS_KEY) if isinstance(metadata, Mapping) else None
    return dict(tags) if isinstance(tags, Mapping) else {}


# The instance LiteLLM's proxy loads by name (`callbacks: spendstream_sdk.litellm.spendstream_callback`); its
# meter is made from the environment on the first call.
spendstream_callback = SpendstreamCallback()
