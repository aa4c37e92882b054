"""From a span of the OpenTelemetry GenAI conventions to one usage event, or to why the span is refused.

Per span, in this order:
  1. content: a span carrying prompt or completion content (CONTENT_KEYS, CONTENT_PREFIXES, or a span event of
     CONTENT_EVENTS with content in it) is refused whatever else it holds; its refusal names the attribute keys
     from the lists below, never a value nor a key the client made up;
  2. usage: a span without token counts, or of an operation that sums its children's (an agent, a workflow, a
     tool), is not a usage record and is ignored, so a whole trace can be exported unfiltered and nothing counts
     twice;
  3. the usage event: provider (normalised to spendstream's names, PROVIDERS), model, tokens under the current
     and the older attribute names, latency from the span's times, timestamp from its start, tags from TAGS and
     `spendstream.tag.<key>` attributes, and an event id made of the trace and span ids, so a re-export of the
     same span is a duplicate. The event then goes through ingest's one acceptor (guard, schema, dedupe, quota).
The README's "OTLP (OpenTelemetry GenAI)" section documents every mapping below; tests/ingest/test_otlp_spans.py
holds them as decision tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spendstream.guard import is_content_key, path_segment

# Prompt and completion content, as the GenAI conventions name it (current and older names), and the few other
# instrumentations' keys that hold the same thing.
CONTENT_KEYS = frozenset(
    {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.retrieval.documents",
        "gen_ai.retrieval.query.text",
        "gen_ai.evaluation.explanation",
        "gen_ai.prompt",
        "gen_ai.completion",
        "input.value",  # OpenInference
        "output.value",
        "traceloop.entity.input",  # OpenLLMetry
        "traceloop.entity.output",
    }
)
CONTENT_PREFIXES = (
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.prompts.",
    "llm.completions.",
)
# Under a content prefix, but naming a prompt template, not its text.
NOT_CONTENT = frozenset({"gen_ai.prompt.name", "gen_ai.prompt.version", "gen_ai.prompt.id"})
# Span events that carry messages (the current conventions' one event, and the older per-message events).
CONTENT_EVENTS = frozenset(
    {
        "gen_ai.client.inference.operation.details",
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.assistant.message",
        "gen_ai.tool.message",
        "gen_ai.choice",
        "gen_ai.content.prompt",
        "gen_ai.content.completion",
    }
)
CAPTURE_OFF = (
    "Switch content capture off: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=false "
    "(NO_CONTENT with OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental)"
)

# gen_ai.provider.name (or the older gen_ai.system) -> spendstream's provider, as the price table files them
# (prices.NAMESPACES, else LiteLLM's `<provider>/` namespace). A value not listed is kept as sent, lower-cased.
PROVIDERS = {
    "aws.bedrock": "bedrock",
    "az.ai.openai": "azure",
    "azure.ai.openai": "azure",
    "az.ai.inference": "azure_ai",
    "azure.ai.inference": "azure_ai",
    "gcp.gemini": "gemini",
    "gcp.vertex_ai": "vertex_ai",
    "gcp.gen_ai": "google",
    "ibm.watsonx.ai": "watsonx",
    "mistral_ai": "mistral",
    "x_ai": "xai",
}
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system")
MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model")
# Each token field of the event: its attribute names, the current convention's first. The cache reads and the
# cache writes are disjoint parts of the input tokens in the conventions as in the event; no convention names the
# 1-hour part of the cache writes, so cache_creation_1h_input_tokens stays unset.
INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
TOKEN_PARTS = {
    "cached_input_tokens": (
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
        "gen_ai.usage.input_tokens.cached",
    ),
    "cache_creation_input_tokens": (
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
        "gen_ai.usage.input_tokens.cache_write",
    ),
    "reasoning_tokens": (
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.output_tokens.reasoning",
        "gen_ai.usage.reasoning_tokens",
    ),
}
SERVICE_TIER_KEYS = ("openai.response.service_tier", "gen_ai.openai.response.service_tier")
# Operations whose spans sum the usage of the inference spans under them: counting them would count twice.
AGGREGATE_OPERATIONS = frozenset({"invoke_agent", "create_agent", "invoke_workflow", "execute_tool", "retrieval"})

# Resource or span attribute -> tag; listed first wins. `spendstream.tag.<key>` sets tag <key> and overrides them.
TAGS = (
    ("deployment.environment.name", "environment"),
    ("deployment.environment", "environment"),
    ("service.name", "service"),
    ("gen_ai.agent.name", "agent"),
    ("gen_ai.operation.name", "operation"),
)
TAG_PREFIX = "spendstream.tag."
_UNNAMED_SERVICE = "unknown_service"  # the SDK's placeholder when no service.name is configured

EVENT_ID_PREFIX = "otlp-"


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a span is not taken: a reason code, the attribute keys at fault (names from this module's lists or
    the guard's masked form, never a value), and a message for the exporter's operator."""

    code: str
    keys: tuple[str, ...]
    message: str


Attributes = dict[str, AnyValue]
# A resource's tags for its spans: (derived from TAGS, explicit from `spendstream.tag.*`), or why they are refused.
Tags = tuple[dict[str, str], dict[str, str]] | Refused


def attributes(pairs: Any) -> Attributes:
    """A span's, resource's or event's repeated KeyValue as a dict (the last of a repeated key wins)."""
    out: Attributes = {}
    kv: KeyValue
    for kv in pairs:
        out[kv.key] = kv.value
    return out


def content_keys(span: Span, attrs: Attributes) -> tuple[str, ...]:
    """The content the span carries, by name: its content attributes and its content-bearing events."""
    found: list[str] = []
    for key in attrs:
        if key in CONTENT_KEYS or key.startswith(CONTENT_PREFIXES):  # the usual span has none: one test per key
            name = _content_name(key)
            if name is not None and name not in found:
                found.append(name)
    for event in span.events:
        names = [_content_name(kv.key) for kv in event.attributes]
        if event.name in CONTENT_EVENTS and any(is_content_key(kv.key) for kv in event.attributes):
            names.append(f"event {event.name}")
        for name in names:
            if name is not None and name not in found:
                found.append(name)
    return tuple(found)


def _content_name(key: str) -> str | None:
    if key in CONTENT_KEYS:
        return key
    if key.startswith(CONTENT_PREFIXES) and key not in NOT_CONTENT:
        return next(p for p in CONTENT_PREFIXES if key.startswith(p)) + "*"
    return None


def resource_tags(resource: Attributes) -> Tags:
    """The tags a resource gives each of its spans (`usage_event`'s `resource`): TAGS, then `spendstream.tag.*`."""
    return _tags({}, {}, resource)


def usage_event(span: Span, resource: Tags) -> dict[str, Any] | Refused | None:
    """The usage event of a span (a dict as a client would send it, for ingest's acceptor), a refusal, or None
    when the span is no usage record (not GenAI, no token counts, or an aggregate operation). `resource` is
    `resource_tags` of the span's resource."""
    attrs = attributes(span.attributes)
    content = content_keys(span, attrs)
    if content:
        return Refused("content_refused", content, "prompt or completion content, which spendstream never stores")
    input_key = _first(attrs, INPUT_KEYS)
    output_key = _first(attrs, OUTPUT_KEYS)
    if input_key is None and output_key is None:
        return None
    operation = _text(attrs.get("gen_ai.operation.name"))
    if operation in AGGREGATE_OPERATIONS:
        return None
    provider_key = _first(attrs, PROVIDER_KEYS)
    provider = _text(attrs[provider_key]) if provider_key else None
    if not provider:
        return Refused("missing_provider", PROVIDER_KEYS[:1], "token counts without a provider")
    provider = provider.strip().lower()
    model_key = _first(attrs, MODEL_KEYS)
    model = _text(attrs[model_key]) if model_key else None
    if not model:
        return Refused("missing_model", MODEL_KEYS[1:], "token counts without a model")
    ids = _event_id(span)
    if isinstance(ids, Refused):
        return ids
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    stamp = _stamp(start)
    if stamp is None or end < start:
        return Refused("invalid_span_times", (), "no valid start and end time")
    event: dict[str, Any] = {
        "event_id": ids,
        "provider": PROVIDERS.get(provider, provider),
        "model": model,
        "latency_ms": (end - start + 500_000) // 1_000_000,
        "timestamp": stamp,
    }
    for field, key in (("input_tokens", input_key), ("output_tokens", output_key)):
        count = _count(attrs, key) if key else 0
        if isinstance(count, Refused):
            return count
        event[field] = count
    for field, keys in TOKEN_PARTS.items():
        key = _first(attrs, keys)
        if key is not None:
            count = _count(attrs, key)
            if isinstance(count, Refused):
                return count
            event[field] = count
    tier_key = _first(attrs, SERVICE_TIER_KEYS)
    if tier_key is not None:
        tier = _text(attrs[tier_key])
        if tier is None:
            return Refused("invalid_value", (tier_key,), "a service tier that is not a string")
        event["service_tier"] = tier.lower()  # the event's tiers are lower-case names
    if isinstance(resource, Refused):
        return resource
    tags = _tags(resource[0], resource[1], attrs)
    if isinstance(tags, Refused):
        return tags
    event["tags"] = tags[0] | tags[1]
    return event


def _first(attrs: Mapping[str, AnyValue], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in attrs:
            return key
    return None


def _text(value: AnyValue | None) -> str | None:
    if value is None or value.WhichOneof("value") != "string_value":
        return None
    return value.string_value


def _count(attrs: Attributes, key: str) -> int | Refused:
    value = attrs[key]
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return value.int_value
    if kind == "double_value" and value.double_value.is_integer():  # JavaScript SDKs may send numbers as doubles
        return int(value.double_value)
    return Refused("invalid_value", (key,), "a token count that is not an integer")


def _event_id(span: Span) -> str | Refused:
    trace, span_id = span.trace_id, span.span_id
    if len(trace) != 16 or len(span_id) != 8 or not any(trace) or not any(span_id):
        return Refused("invalid_span_id", (), "no valid trace id and span id")
    return f"{EVENT_ID_PREFIX}{trace.hex()}-{span_id.hex()}"


def _stamp(unix_nano: int) -> str | None:
    if unix_nano <= 0:
        return None
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    try:
        instant = datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000)
    except (OverflowError, OSError, ValueError):
        return None
    return instant.isoformat()


def _tags(derived: dict[str, str], explicit: dict[str, str], attrs: Attributes) -> Tags:
    """`derived` (from TAGS) and `explicit` (from `spendstream.tag.<key>`) tags with those of `attrs` over them.
    The event's tags are derived ones overridden by explicit ones; the acceptor's guard checks them like any
    event's."""
    derived, explicit = dict(derived), dict(explicit)
    for key, tag in reversed(TAGS):  # the first listed is applied last, so it wins
        if key in attrs:
            value = _tag_value(attrs[key])
            if value is None:
                return Refused("invalid_tag", (key,), "a tag attribute that is not a string or a number")
            if key == "service.name" and value.startswith(_UNNAMED_SERVICE):
                continue
            derived[tag] = value
    for key, raw in attrs.items():
        if key.startswith(TAG_PREFIX):
            tag = key[len(TAG_PREFIX) :]
            value = _tag_value(raw)
            if value is None:
                named = TAG_PREFIX + path_segment(tag)
                return Refused("invalid_tag", (named,), "a tag attribute that is not a string or a number")
            explicit[tag] = value
    return derived, explicit


def _tag_value(value: AnyValue) -> str | None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    return None
