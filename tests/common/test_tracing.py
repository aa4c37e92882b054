"""Trace context across the pipeline: the `traceparent` a publisher puts on its records, and the parent and
links a consumer of many records continues from."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from spendstream.common.tracing import context_from_headers, current_traceparent, parent_and_links

# A provider of its own, not the global one: other tests install theirs.
TRACER = TracerProvider().get_tracer("test")


def _traceparent() -> str:
    with TRACER.start_as_current_span("publish"):
        found = current_traceparent()
    assert found is not None
    return found


def test_no_traceparent_outside_a_span() -> None:
    assert current_traceparent() is None


def test_a_traceparent_names_the_current_span_and_reads_back_as_its_context() -> None:
    with TRACER.start_as_current_span("publish") as span:
        traceparent = current_traceparent()
    assert traceparent is not None
    remote = trace.get_current_span(context_from_headers({"TraceParent": traceparent})).get_span_context()
    assert (remote.trace_id, remote.span_id, remote.is_remote) == (
        span.get_span_context().trace_id,
        span.get_span_context().span_id,
        True,
    )


def test_a_batch_continues_the_first_records_trace_and_links_every_traced_record() -> None:
    first, second = _traceparent(), _traceparent()
    parent, links = parent_and_links([None, first, "garbage", second])
    assert parent is not None
    assert trace.get_current_span(parent).get_span_context().trace_id == int(first.split("-")[1], 16)
    assert [link.context.trace_id for link in links] == [int(tp.split("-")[1], 16) for tp in (first, second)]


def test_a_batch_without_traced_records_has_no_parent_and_no_links() -> None:
    assert parent_and_links([None, None]) == (None, [])
