"""From GenAI spans to usage events, as decision tables (in memory): what is taken, what is refused, what is
ignored, and how each attribute maps."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spendstream.common.events import validate_events
from spendstream.ingest.body import BodyError
from spendstream.ingest.otlp_api import error_message, map_request
from spendstream.ingest.otlp_body import JSON, PROTOBUF, decode, encode_response, encode_status
from spendstream.ingest.otlp_spans import CAPTURE_OFF, Refused, attributes, resource_tags, usage_event

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN = bytes.fromhex("b7ad6b7169203331")
START = 1_764_864_000_123_456_789  # 2025-12-04T16:00:00.123456789Z


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[value(x) for x in v]))
    return AnyValue(string_value=v)


def kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in attrs.items()]


def span(attrs: dict[str, Any], *, events: list[tuple[str, dict[str, Any]]] = (), **fields: Any) -> Span:  # type: ignore[assignment]
    values: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "name": "chat gpt-4o",
        "start_time_unix_nano": START,
        "end_time_unix_nano": START + 1_234_500_000,
    }
    values.update(fields)
    return Span(attributes=kvs(attrs), events=[Span.Event(name=n, attributes=kvs(a)) for n, a in events], **values)


NO_RESOURCE = resource_tags({})
CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
}


def mapped(attrs: dict[str, Any], resource: dict[str, Any] | None = None, **fields: Any) -> Any:
    return usage_event(span(attrs, **fields), resource_tags(attributes(kvs(resource or {}))))


def test_a_chat_span_becomes_one_usage_event_named_by_its_trace_and_span() -> None:
    assert mapped(CHAT, {"service.name": "checkout", "deployment.environment.name": "prod"}) == {
        "event_id": "otlp-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "provider": "openai",
        "model": "gpt-4o-2024-08-06",
        "input_tokens": 1200,
        "output_tokens": 300,
        "latency_ms": 1235,
        "timestamp": "2025-12-04T16:00:00.123456+00:00",
        "tags": {"environment": "prod", "service": "checkout", "operation": "chat"},
    }


def test_the_event_passes_the_event_contract_as_is() -> None:
    event = mapped({**CHAT, "gen_ai.usage.cache_read.input_tokens": 200})
    result = validate_events([event], datetime.fromtimestamp(START / 1e9, UTC), None)
    assert result.rejected == [] and result.accepted[0].cached_input_tokens == 200


@pytest.mark.parametrize(
    ("sent", "provider"),
    [
        ("openai", "openai"),
        ("anthropic", "anthropic"),
        ("aws.bedrock", "bedrock"),
        ("az.ai.openai", "azure"),
        ("azure.ai.openai", "azure"),
        ("azure.ai.inference", "azure_ai"),
        ("gcp.gemini", "gemini"),
        ("gcp.vertex_ai", "vertex_ai"),
        ("gcp.gen_ai", "google"),
        ("mistral_ai", "mistral"),
        ("deepseek", "deepseek"),
        ("x_ai", "xai"),
        ("groq", "groq"),
        ("cohere", "cohere"),
        ("perplexity", "perplexity"),
        ("ibm.watsonx.ai", "watsonx"),
        ("OpenAI", "openai"),
        ("ollama", "ollama"),
    ],
)
def test_providers_are_normalised_to_spendstreams_names(sent: str, provider: str) -> None:
    attrs = {**CHAT, "gen_ai.provider.name": sent}
    assert mapped(attrs)["provider"] == provider
    older = {k: v for k, v in attrs.items() if k != "gen_ai.provider.name"} | {"gen_ai.system": sent}
    assert mapped(older)["provider"] == provider


def test_the_current_provider_attribute_wins_over_the_older_one() -> None:
    assert mapped({**CHAT, "gen_ai.system": "az.ai.openai"})["provider"] == "openai"


@pytest.mark.parametrize(
    ("attrs", "model"),
    [
        ({"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06"}, "gpt-4o-2024-08-06"),
        ({"gen_ai.request.model": "gpt-4o"}, "gpt-4o"),
        ({"gen_ai.response.model": "claude-sonnet-4-5"}, "claude-sonnet-4-5"),
    ],
)
def test_the_model_is_the_response_model_else_the_request_model(attrs: dict[str, Any], model: str) -> None:
    base = {k: v for k, v in CHAT.items() if not k.endswith(".model")}
    assert mapped(base | attrs)["model"] == model


# (span attributes, the event's token fields)
TOKENS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5}, {"input_tokens": 10, "output_tokens": 5}),
    ({"gen_ai.usage.prompt_tokens": 10, "gen_ai.usage.completion_tokens": 5}, {"input_tokens": 10, "output_tokens": 5}),
    ({"gen_ai.usage.input_tokens": 10}, {"input_tokens": 10, "output_tokens": 0}),  # embeddings
    ({"gen_ai.usage.output_tokens": 5}, {"input_tokens": 0, "output_tokens": 5}),
    (
        {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.prompt_tokens": 99, "gen_ai.usage.output_tokens": 5},
        {"input_tokens": 10, "output_tokens": 5},
    ),
    (
        {
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 50,
            "gen_ai.usage.cache_read.input_tokens": 40,
        },
        {"input_tokens": 100, "output_tokens": 50, "cached_input_tokens": 40},
    ),
    (
        {
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 50,
            "gen_ai.usage.cache_read_input_tokens": 40,
        },
        {"input_tokens": 100, "output_tokens": 50, "cached_input_tokens": 40},
    ),
    (
        {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 50, "gen_ai.usage.input_tokens.cached": 40},
        {"input_tokens": 100, "output_tokens": 50, "cached_input_tokens": 40},
    ),
    (
        {
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 50,
            "gen_ai.usage.reasoning.output_tokens": 30,
        },
        {"input_tokens": 100, "output_tokens": 50, "reasoning_tokens": 30},
    ),
    (
        {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 50, "gen_ai.usage.reasoning_tokens": 30},
        {"input_tokens": 100, "output_tokens": 50, "reasoning_tokens": 30},
    ),
    (
        {
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 50,
            "gen_ai.usage.output_tokens.reasoning": 30,
        },
        {"input_tokens": 100, "output_tokens": 50, "reasoning_tokens": 30},
    ),
    ({"gen_ai.usage.input_tokens": 10.0, "gen_ai.usage.output_tokens": 5}, {"input_tokens": 10, "output_tokens": 5}),
    *(
        (
            {"gen_ai.usage.input_tokens": 5000, "gen_ai.usage.output_tokens": 50, key: 600},
            {"input_tokens": 5000, "output_tokens": 50, "cache_creation_input_tokens": 600},
        )
        for key in (
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.cache_write.input_tokens",
            "gen_ai.usage.cache_creation_input_tokens",
            "gen_ai.usage.input_tokens.cache_write",
        )
    ),
    (
        {
            "gen_ai.usage.input_tokens": 5000,
            "gen_ai.usage.output_tokens": 250,
            "gen_ai.usage.cache_read.input_tokens": 4000,
            "gen_ai.usage.cache_creation.input_tokens": 1000,
        },
        {"input_tokens": 5000, "output_tokens": 250, "cached_input_tokens": 4000, "cache_creation_input_tokens": 1000},
    ),
]


@pytest.mark.parametrize(("attrs", "tokens"), TOKENS)
def test_token_counts_under_current_and_older_names(attrs: dict[str, Any], tokens: dict[str, Any]) -> None:
    base = {k: v for k, v in CHAT.items() if not k.startswith("gen_ai.usage.")}
    event = mapped(base | attrs)
    assert {k: v for k, v in event.items() if k.endswith("_tokens")} == tokens


@pytest.mark.parametrize(
    ("attrs", "tier"),
    [
        ({"openai.response.service_tier": "default"}, "default"),
        ({"gen_ai.openai.response.service_tier": "flex"}, "flex"),
        ({"openai.response.service_tier": "Priority", "gen_ai.openai.response.service_tier": "scale"}, "priority"),
        ({"gen_ai.openai.request.service_tier": "auto"}, None),  # asked for, not billed: not the event's
    ],
)
def test_the_billed_service_tier(attrs: dict[str, Any], tier: str | None) -> None:
    assert mapped(CHAT | attrs).get("service_tier") == tier


def test_every_event_field_the_mapping_fills_passes_the_contract() -> None:
    attrs = CHAT | {
        "gen_ai.usage.cache_read.input_tokens": 700,
        "gen_ai.usage.cache_creation.input_tokens": 300,
        "gen_ai.usage.reasoning.output_tokens": 100,
        "openai.response.service_tier": "priority",
    }
    result = validate_events([mapped(attrs)], datetime.fromtimestamp(START / 1e9, UTC), None)
    assert result.rejected == []
    (event,) = result.accepted
    assert (event.cached_input_tokens, event.cache_creation_input_tokens, event.reasoning_tokens) == (700, 300, 100)
    assert (event.cache_creation_1h_input_tokens, event.service_tier) == (None, "priority")


def test_cache_parts_beyond_the_input_are_refused_by_the_contract() -> None:
    attrs = CHAT | {"gen_ai.usage.cache_read.input_tokens": 1000, "gen_ai.usage.cache_creation.input_tokens": 1000}
    result = validate_events([mapped(attrs)], datetime.fromtimestamp(START / 1e9, UTC), None)
    assert [r.code for r in result.rejected] == ["inconsistent_tokens"]


@pytest.mark.parametrize(
    "attrs",
    [
        {"http.request.method": "POST", "url.full": "https://example.test/"},  # not GenAI at all
        {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"},
        {**CHAT, "gen_ai.operation.name": "invoke_agent"},  # sums its children's usage
        {**CHAT, "gen_ai.operation.name": "invoke_workflow"},
        {**CHAT, "gen_ai.operation.name": "execute_tool"},
        {**CHAT, "gen_ai.operation.name": "create_agent"},
    ],
)
def test_spans_without_usage_of_their_own_are_ignored(attrs: dict[str, Any]) -> None:
    assert mapped(attrs) is None


CONTENT: list[tuple[dict[str, Any], list[tuple[str, dict[str, Any]]], tuple[str, ...]]] = [
    ({"gen_ai.input.messages": '[{"role":"user"}]'}, [], ("gen_ai.input.messages",)),
    ({"gen_ai.output.messages": "[]"}, [], ("gen_ai.output.messages",)),
    ({"gen_ai.system_instructions": "[]"}, [], ("gen_ai.system_instructions",)),
    ({"gen_ai.tool.definitions": "[]"}, [], ("gen_ai.tool.definitions",)),
    ({"gen_ai.tool.call.arguments": "{}"}, [], ("gen_ai.tool.call.arguments",)),
    ({"gen_ai.tool.call.result": "{}"}, [], ("gen_ai.tool.call.result",)),
    ({"gen_ai.prompt": "x"}, [], ("gen_ai.prompt",)),
    ({"gen_ai.prompt.0.content": "x", "gen_ai.prompt.0.role": "user"}, [], ("gen_ai.prompt.*",)),
    ({"gen_ai.completion.0.content": "x"}, [], ("gen_ai.completion.*",)),
    ({"llm.input_messages.0.message.content": "x"}, [], ("llm.input_messages.*",)),
    (
        {"gen_ai.input.messages": "[]", "gen_ai.output.messages": "[]"},
        [],
        ("gen_ai.input.messages", "gen_ai.output.messages"),
    ),
    (
        {},
        [("gen_ai.client.inference.operation.details", {"gen_ai.input.messages": "[]"})],
        ("gen_ai.input.messages", "event gen_ai.client.inference.operation.details"),
    ),
    ({}, [("gen_ai.user.message", {"content": "x"})], ("event gen_ai.user.message",)),
    ({}, [("gen_ai.choice", {"index": 0, "message": "{}"})], ("event gen_ai.choice",)),
    ({}, [("gen_ai.content.prompt", {"gen_ai.prompt": "x"})], ("gen_ai.prompt", "event gen_ai.content.prompt")),
]


@pytest.mark.parametrize(("attrs", "events", "keys"), CONTENT)
def test_content_refuses_the_whole_span_and_names_its_keys(
    attrs: dict[str, Any], events: list[tuple[str, dict[str, Any]]], keys: tuple[str, ...]
) -> None:
    refused = usage_event(span(CHAT | attrs, events=events), NO_RESOURCE)
    assert isinstance(refused, Refused) and refused.code == "content_refused" and refused.keys == keys
    # Without usage too: the exporter is sending content, and says so
    assert isinstance(usage_event(span(attrs, events=events), NO_RESOURCE), Refused)


@pytest.mark.parametrize(
    ("attrs", "events"),
    [
        ({"gen_ai.prompt.name": "support-v2", "gen_ai.prompt.version": "3"}, []),
        ({}, [("gen_ai.choice", {"index": 0, "finish_reason": "stop"})]),  # no content in it
        ({}, [("exception", {"exception.type": "TimeoutError"})]),
    ],
)
def test_names_of_prompt_templates_and_content_free_events_are_not_content(
    attrs: dict[str, Any], events: list[tuple[str, dict[str, Any]]]
) -> None:
    assert isinstance(usage_event(span(CHAT | attrs, events=events), NO_RESOURCE), dict)


def test_the_refusal_never_quotes_a_value() -> None:
    secret = "my card is 4111 1111 1111 1111"
    refused = usage_event(
        span(CHAT | {"gen_ai.input.messages": secret, "gen_ai.prompt.9." + secret: secret}), NO_RESOURCE
    )
    assert isinstance(refused, Refused)
    message = error_message([refused])
    assert secret not in message and "4111" not in message
    assert "gen_ai.input.messages" in message and CAPTURE_OFF in message


# (resource attributes, span attributes, tags)
TAGS: list[tuple[dict[str, Any], dict[str, Any], dict[str, str]]] = [
    ({"deployment.environment.name": "prod"}, {}, {"environment": "prod"}),
    ({"deployment.environment": "staging"}, {}, {"environment": "staging"}),
    ({"deployment.environment": "old", "deployment.environment.name": "new"}, {}, {"environment": "new"}),
    ({"service.name": "checkout"}, {}, {"service": "checkout"}),
    ({"service.name": "unknown_service:python"}, {}, {}),  # the SDK's placeholder names nothing
    ({}, {"gen_ai.agent.name": "planner"}, {"agent": "planner"}),
    ({}, {"gen_ai.operation.name": "embeddings"}, {"operation": "embeddings"}),
    ({"spendstream.tag.feature": "search"}, {}, {"feature": "search"}),
    ({"spendstream.tag.feature": "search"}, {"spendstream.tag.feature": "chat"}, {"feature": "chat"}),
    ({"deployment.environment.name": "prod"}, {"spendstream.tag.environment": "canary"}, {"environment": "canary"}),
    ({}, {"spendstream.tag.customer_id": 42, "spendstream.tag.beta": True}, {"customer_id": "42", "beta": "true"}),
]


@pytest.mark.parametrize(("resource", "attrs", "tags"), TAGS)
def test_tags_from_resource_and_span_attributes(
    resource: dict[str, Any], attrs: dict[str, Any], tags: dict[str, str]
) -> None:
    base = {k: v for k, v in CHAT.items() if k != "gen_ai.operation.name"}
    assert mapped(base | attrs, resource)["tags"] == tags


def test_a_tag_attribute_of_another_type_refuses_the_span() -> None:
    refused = mapped(CHAT | {"spendstream.tag.feature": ["a", "b"]})
    assert refused == Refused("invalid_tag", ("spendstream.tag.feature",), refused.message)


@pytest.mark.parametrize(
    ("attrs", "fields", "code"),
    [
        ({"gen_ai.provider.name": ""}, {}, "missing_provider"),
        ({"gen_ai.request.model": "", "gen_ai.response.model": ""}, {}, "missing_model"),
        ({"gen_ai.usage.input_tokens": "1200"}, {}, "invalid_value"),
        ({"gen_ai.usage.input_tokens": 12.5}, {}, "invalid_value"),
        ({}, {"trace_id": b""}, "invalid_span_id"),
        ({}, {"span_id": bytes(8)}, "invalid_span_id"),
        ({}, {"start_time_unix_nano": 0}, "invalid_span_times"),
        ({}, {"end_time_unix_nano": START - 1}, "invalid_span_times"),
    ],
)
def test_usage_spans_that_cannot_make_an_event_are_refused(
    attrs: dict[str, Any], fields: dict[str, Any], code: str
) -> None:
    refused = mapped(CHAT | attrs, **fields)
    assert isinstance(refused, Refused) and refused.code == code


def export_request(*spans: Span, resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(kvs(resource or {}))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def test_a_request_maps_span_by_span() -> None:
    http = span({"http.request.method": "GET"}, span_id=b"\x00" * 7 + b"\x02")
    leaky = span(CHAT | {"gen_ai.input.messages": "[]"}, span_id=b"\x00" * 7 + b"\x03")
    outcome = map_request(export_request(span(CHAT), http, leaky))
    assert len(outcome.events) == 1 and outcome.ignored == 1
    assert [r.code for r in outcome.refused] == ["content_refused"]


def test_otlp_json_with_hex_ids_and_string_int64_reads_as_protobuf_does() -> None:
    every_kind = {"s": "text", "i": -7, "b": False, "d": 2.5, "a": ["x", 1, [True]], "e": []}
    kvlist = AnyValue(kvlist_value=KeyValueList(values=kvs({"k": "v", "n": 3})))
    bytes_value = AnyValue(bytes_value=b"\x00\xff")
    attrs = span(CHAT | every_kind, events=[("exception", {"exception.type": "TimeoutError"})])
    attrs.attributes.extend([KeyValue(key="kv", value=kvlist), KeyValue(key="raw", value=bytes_value)])
    request = export_request(attrs, resource={"service.name": "checkout"})
    as_json = json_format.MessageToDict(request)  # base64 ids: the protobuf mapping, not OTLP's
    for resource_spans in as_json["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for s in scope_spans["spans"]:
                s["traceId"] = base64.b64decode(s["traceId"]).hex()
                s["spanId"] = base64.b64decode(s["spanId"]).hex()
    assert as_json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"] == str(START)
    assert decode(JSON, orjson.dumps(as_json)) == request
    assert decode(PROTOBUF, request.SerializeToString()) == request


def test_otlp_json_ignores_unknown_fields_and_accepts_field_names() -> None:
    body = {
        "resource_spans": [
            {"scope_spans": [{"spans": [{"trace_id": TRACE.hex(), "span_id": SPAN.hex(), "futureField": 1}]}]}
        ],
        "somethingNew": True,
    }
    parsed = decode(JSON, orjson.dumps(body))
    assert parsed.resource_spans[0].scope_spans[0].spans[0].span_id == SPAN


def _with_attribute(value: str) -> bytes:
    head = '{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "k", "value": '
    return (head + value + "}]}]}]}]}").encode()


@pytest.mark.parametrize(
    ("media_type", "raw", "code"),
    [
        (PROTOBUF, b"\xff\xff\xff", "invalid_otlp"),
        (JSON, b"{not json", "invalid_json"),
        (JSON, b"[]", "invalid_otlp"),
        (JSON, b'{"resourceSpans": 5}', "invalid_otlp"),
        (JSON, b'{"resourceSpans": null}', "invalid_otlp"),
        (JSON, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": null}]}]}]}', "invalid_otlp"),
        (JSON, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "invalid_otlp"),
        (JSON, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}', "invalid_otlp"),
        (JSON, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": -1}]}]}]}', "invalid_otlp"),
        (JSON, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "abcd"}]}]}]}', "invalid_otlp"),
        (JSON, _with_attribute('"zz"'), "invalid_otlp"),
        (JSON, _with_attribute('{"stringValue": 5}'), "invalid_otlp"),
        (JSON, _with_attribute('{"intValue": "1e3"}'), "invalid_otlp"),
        (JSON, _with_attribute('{"intValue": true}'), "invalid_otlp"),
        (JSON, _with_attribute('{"intValue": "99999999999999999999"}'), "invalid_otlp"),
        (JSON, _with_attribute('{"boolValue": "zz"}'), "invalid_otlp"),
        (JSON, _with_attribute('{"doubleValue": "zz"}'), "invalid_otlp"),
        (JSON, _with_attribute('{"bytesValue": "zz!"}'), "invalid_otlp"),
        (JSON, _with_attribute('{"arrayValue": {"values": ["zz"]}}'), "invalid_otlp"),
        (JSON, _with_attribute('{"stringValue": "", "kvlistValue": {"values": [[null]]}}'), "invalid_otlp"),
        (JSON, _with_attribute('{"arrayValue": {"values": [' * 20 + "{}" + "]}}" * 20), "invalid_otlp"),
    ],
)
def test_unreadable_bodies_are_400(media_type: str, raw: bytes, code: str) -> None:
    with pytest.raises(BodyError) as caught:
        decode(media_type, raw)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert "soon" not in caught.value.message and "zz" not in caught.value.message


def test_answers_take_the_requests_encoding() -> None:
    assert ExportTraceServiceResponse.FromString(encode_response(PROTOBUF, 0, "")) == ExportTraceServiceResponse()
    answer = ExportTraceServiceResponse.FromString(encode_response(PROTOBUF, 2, "2 spans refused"))
    assert (answer.partial_success.rejected_spans, answer.partial_success.error_message) == (2, "2 spans refused")
    assert orjson.loads(encode_response(JSON, 0, "")) == {}
    assert orjson.loads(encode_response(JSON, 3, "why")) == {
        "partialSuccess": {"rejectedSpans": "3", "errorMessage": "why"}
    }
    status = Status.FromString(encode_status(503, "the event log cannot take the spans now"))
    assert (status.code, status.message) == (14, "the event log cannot take the spans now")
