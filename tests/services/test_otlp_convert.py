"""OTLP trace requests into interaction events, under each convention (pure: nothing running).

The spans are made by the real OpenTelemetry SDK and encoded by its OTLP encoder; the conventions the installed
instrumentations no longer emit (OpenLLMetry's indexed `gen_ai.prompt.N.*`, the earlier content span events) are
written here as their documentation gives them. The instrumentations themselves run in test_otlp_sdk.py.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from flywheel_feedback.schemas import otel as vocabulary
from flywheel_feedback.schemas.events import parse_event
from flywheel_feedback.services.capture.validate import Invalid
from flywheel_feedback.services.otlp.convert import NO_CONTENT, NOT_LLM, convert, convert_message
from flywheel_feedback.services.otlp.decode import (
    MalformedOtlpError,
    TooLargeError,
    UnsupportedMediaTypeError,
    decode_request,
    decompress,
    encoding_of,
)

from .otel_helpers import otlp_json, otlp_request, recording_provider

LIMIT = 256 * 1024
GEN_AI_INPUT = [
    {"role": "system", "parts": [{"type": "text", "content": "You draft support replies."}]},
    {"role": "user", "parts": [{"type": "text", "content": "How do I reset my password?"}]},
]
GEN_AI_OUTPUT = [{"role": "assistant", "parts": [{"type": "text", "content": "Open Settings."}],
                  "finish_reason": "stop"}]
CHAT = [{"role": "system", "content": "You draft support replies."},
        {"role": "user", "content": "How do I reset my password?"}]


def llm_span(provider: TracerProvider, attributes: dict[str, Any], *, name: str = "chat gpt-4o",
             duration_ns: int = 250_000_000, events: dict[str, dict[str, Any]] | None = None,
             status: Status | None = None) -> None:
    start = 1_795_000_000_123_456_789
    span = provider.get_tracer("test").start_span(name, start_time=start, attributes=attributes)
    for event, event_attributes in (events or {}).items():
        span.add_event(event, event_attributes, timestamp=start + 1)
    if status is not None:
        span.set_status(status)
    span.end(end_time=start + duration_ns)


def gen_ai(**extra: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.usage.input_tokens": 20,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.input.messages": json.dumps(GEN_AI_INPUT),
        "gen_ai.output.messages": json.dumps(GEN_AI_OUTPUT),
        **extra,
    }


def events_of(attributes_list: list[dict[str, Any]], **span: Any) -> list[dict[str, Any]]:
    with recording_provider() as (provider, exporter):
        for attributes in attributes_list:
            llm_span(provider, attributes, **span)
        converted = convert(otlp_request(exporter.get_finished_spans()), max_event_bytes=LIMIT)
    for key, value in converted.events:
        parse_event(value)  # the contract holds
        assert key.decode() == json.loads(value)["interaction_id"]
    return [json.loads(v) for _, v in converted.events]


def test_a_gen_ai_span_becomes_an_interaction_with_every_field_mapped() -> None:
    with recording_provider(service="support-bot") as (provider, exporter):
        llm_span(provider, gen_ai(**{"gen_ai.conversation.id": "conv-7", "user.id": "u-3", "flywheel.task": "reply",
                                     "flywheel.metadata.segment": "pro", "gen_ai.request.temperature": 0.2}))
        span = exporter.get_finished_spans()[0]
        converted = convert(otlp_request([span]), max_event_bytes=LIMIT)
    assert converted.dropped == {}
    (event,) = [json.loads(v) for _, v in converted.events]
    assert span.context is not None
    iid = vocabulary.interaction_id(span.context.trace_id, span.context.span_id)
    assert event["interaction_id"] == event["event_id"] == iid
    assert iid == f"{span.context.trace_id:032x}-{span.context.span_id:016x}"
    assert event["ts"] == "2026-11-18T11:06:40.123456Z"
    assert event["latency_ms"] == 250
    assert event["model"] == {"id": "gpt-4o", "version": "gpt-4o-2024-08-06", "provider": "openai"}
    assert event["input"] == {"messages": CHAT}
    assert event["output"] == "Open Settings."
    assert (event["session_id"], event["user_id"], event["app"], event["task"]) == ("conv-7", "u-3", "support-bot",
                                                                                  "reply")
    assert event["metadata"]["segment"] == "pro"
    assert event["metadata"]["usage"] == {"input_tokens": 20, "output_tokens": 3}
    assert event["metadata"]["response_id"] == "chatcmpl-1"
    assert event["metadata"]["request"] == {"temperature": 0.2}
    assert event["metadata"]["otel"]["convention"] == "gen_ai"


def test_fallbacks_for_session_user_app_and_task() -> None:
    (event,) = events_of([gen_ai()])
    assert event["session_id"] == event["interaction_id"].split("-")[0]  # the trace id
    assert event["user_id"] == vocabulary.ANONYMOUS_USER
    assert event["task"] == "chat"  # gen_ai.operation.name
    with recording_provider(service="ignored", **{"flywheel.app": "billing", "session.id": "from-resource"}) as (
        provider, exporter,
    ):
        llm_span(provider, gen_ai(**{"gen_ai.agent.name": "refund-agent"}))
        converted = convert(otlp_request(exporter.get_finished_spans()), max_event_bytes=LIMIT)
    event = json.loads(converted.events[0][1])
    assert (event["app"], event["session_id"], event["task"]) == ("billing", "from-resource", "refund-agent")


def test_system_instructions_tool_calls_and_structured_values() -> None:
    attributes = gen_ai(**{
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
        "gen_ai.input.messages": json.dumps([
            {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
            {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "weather",
                                             "arguments": {"city": "Paris"}}]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "18C"}]},
        ]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "reasoning", "content": "it said 18"}, {"type": "text", "content": "18C and sunny."}]}]),
    })
    (event,) = events_of([attributes])
    assert event["input"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": '{"tool_call": {"name": "weather", "arguments": {"city": "Paris"}}}'},
        {"role": "tool", "content": "18C"},
    ]
    assert event["output"] == "18C and sunny."


def test_openinference_attributes_and_its_input_value_fallback() -> None:
    attributes = {
        "openinference.span.kind": "LLM", "llm.system": "openai", "llm.model_name": "gpt-4o-2024-08-06",
        "llm.invocation_parameters": json.dumps({"model": "gpt-4o", "temperature": 0}),
        "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": CHAT[0]["content"],
        "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": CHAT[1]["content"],
        "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "Open Settings.",
        "llm.token_count.prompt": 20, "llm.token_count.completion": 3, "session.id": "s-9", "user.id": "u-9",
        "metadata": json.dumps({"segment": "free"}),
    }
    (event,) = events_of([attributes])
    assert event["model"] == {"id": "gpt-4o", "version": "gpt-4o-2024-08-06", "provider": "openai"}
    assert event["input"] == {"messages": CHAT}
    assert event["output"] == "Open Settings."
    assert (event["session_id"], event["user_id"]) == ("s-9", "u-9")
    assert event["metadata"]["segment"] == "free"
    assert event["metadata"]["usage"] == {"input_tokens": 20, "output_tokens": 3}
    # with the messages hidden, the request and response JSON in input.value / output.value
    hidden = {k: v for k, v in attributes.items() if not k.startswith(("llm.input_messages", "llm.output_messages"))}
    hidden |= {
        "input.value": json.dumps({"model": "gpt-4o", "messages": CHAT}), "input.mime_type": "application/json",
        "output.value": json.dumps({"id": "chatcmpl-5", "choices": [{"message": {"role": "assistant",
                                                                                  "content": "Open Settings."}}]}),
        "output.mime_type": "application/json",
    }
    (event,) = events_of([hidden])
    assert (event["input"], event["output"]) == ({"messages": CHAT}, "Open Settings.")
    assert event["metadata"]["response_id"] == "chatcmpl-5"
    (event,) = events_of([{**hidden, "input.value": "plain question", "input.mime_type": "text/plain"}])
    assert event["input"] == {"prompt": "plain question"}


def test_openllmetry_indexed_prompt_and_completion_attributes() -> None:
    attributes = {
        "llm.request.type": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": CHAT[0]["content"],
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": json.dumps([{"type": "text", "text": CHAT[1]["content"]}]),
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "Open Settings.",
        "gen_ai.completion.0.finish_reason": "stop",
        "gen_ai.usage.prompt_tokens": 20, "gen_ai.usage.completion_tokens": 3,
        "traceloop.association.properties.session_id": "s-ll", "traceloop.association.properties.user_id": "u-ll",
    }
    (event,) = events_of([attributes])
    assert event["model"] == {"id": "gpt-4o", "version": "gpt-4o-2024-08-06", "provider": "openai"}
    assert (event["input"], event["output"]) == ({"messages": CHAT}, "Open Settings.")
    assert (event["session_id"], event["user_id"]) == ("s-ll", "u-ll")
    assert event["metadata"]["otel"]["convention"] == "openllmetry"
    assert event["metadata"]["usage"] == {"input_tokens": 20, "output_tokens": 3}
    calls = {**attributes, "gen_ai.completion.0.content": None,
             "gen_ai.completion.0.tool_calls.0.name": "lookup", "gen_ai.completion.0.tool_calls.0.arguments": "{}"}
    del calls["gen_ai.completion.0.content"]
    (event,) = events_of([calls])
    assert event["output"] == '{"tool_call": {"name": "lookup", "arguments": {}}}'


def test_text_that_looks_like_json_stays_text() -> None:
    pasted = '[{"sku": "A-1", "qty": 2}]'
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": pasted}]}])
    (event,) = events_of([gen_ai(**{"gen_ai.input.messages": messages})])
    assert event["input"]["messages"] == [{"role": "user", "content": pasted}]
    (event,) = events_of([{"openinference.span.kind": "LLM", "llm.model_name": "m",
                           "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": pasted,
                           "llm.output_messages.0.message.role": "assistant",
                           "llm.output_messages.0.message.content": pasted}])
    assert (event["input"]["messages"][0]["content"], event["output"]) == (pasted, pasted)


def test_messages_carried_as_span_events() -> None:
    base = {k: v for k, v in gen_ai().items() if k not in ("gen_ai.input.messages", "gen_ai.output.messages")}
    details = {"gen_ai.input.messages": json.dumps(GEN_AI_INPUT), "gen_ai.output.messages": json.dumps(GEN_AI_OUTPUT)}
    (event,) = events_of([base], events={"gen_ai.client.inference.operation.details": details})
    assert (event["input"], event["output"]) == ({"messages": CHAT}, "Open Settings.")
    earlier = {"gen_ai.content.prompt": {"gen_ai.prompt": json.dumps(CHAT)},
               "gen_ai.content.completion": {"gen_ai.completion": json.dumps([{"role": "assistant",
                                                                                 "content": "Open Settings."}])}}
    (event,) = events_of([base], events=earlier)
    assert (event["input"], event["output"]) == ({"messages": CHAT}, "Open Settings.")
    assert event["metadata"]["otel"]["convention"] == "gen_ai.events"


def test_other_spans_are_counted_and_dropped() -> None:
    with recording_provider() as (provider, exporter):
        tracer = provider.get_tracer("app")
        with tracer.start_as_current_span("GET /tickets"):
            llm_span(provider, gen_ai())
            llm_span(provider, gen_ai(**{"gen_ai.operation.name": "embeddings"}))
            llm_span(provider, {k: v for k, v in gen_ai().items() if "messages" not in k})  # content capture off
            llm_span(provider, gen_ai(), status=Status(StatusCode.ERROR, "rate limited"))
        converted = convert(otlp_request(exporter.get_finished_spans()), max_event_bytes=LIMIT)
    assert len(converted.events) == 1
    assert converted.spans == 5
    assert converted.dropped == {NOT_LLM: 2, NO_CONTENT: 1, "LLM call failed (status ERROR)": 1}
    assert converted.summary().startswith("4 of 5 spans dropped: ")
    event = json.loads(converted.events[0][1])
    assert event["metadata"]["otel"]["parent_span_id"] is not None


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        (gen_ai(**{"gen_ai.input.messages": "[{not json"}), "gen_ai.input.messages is not valid JSON"),
        (gen_ai(**{"gen_ai.input.messages": json.dumps([{"role": "narrator", "parts": []}])}), "role 'narrator'"),
        (gen_ai(**{"gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": "Open"}])}),
         "expected a list"),
        (gen_ai(**{"gen_ai.request.model": "m" * 300}), "would make an invalid interaction"),
        (gen_ai(**{"gen_ai.output.messages": json.dumps([{"role": "assistant",
                                                          "parts": [{"type": "text", "content": "x" * LIMIT}]}])}),
         "oversized"),
    ],
    ids=["bad-json", "unknown-role", "parts-not-a-list", "too-long-model", "oversized-event"],
)
def test_an_unreadable_llm_span_rejects_the_whole_request(attributes: dict[str, Any], reason: str) -> None:
    with recording_provider() as (provider, exporter):
        llm_span(provider, gen_ai())  # a good one first: it is not taken either
        llm_span(provider, attributes)
        request = otlp_request(exporter.get_finished_spans())
    with pytest.raises(MalformedOtlpError, match="spans\\[1\\]") as raised:
        convert(request, max_event_bytes=LIMIT)
    assert reason in raised.value.reason


def test_bad_ids_and_times_are_malformed() -> None:
    with recording_provider() as (provider, exporter):
        llm_span(provider, gen_ai())
        request = otlp_request(exporter.get_finished_spans())
    for field, value, reason in (("span_id", b"\x01\x02", "invalid span id"), ("trace_id", bytes(16), "trace id"),
                                 ("start_time_unix_nano", 0, "no start time"),
                                 ("end_time_unix_nano", 5, "ends before it starts")):
        broken = type(request)()
        broken.CopyFrom(request)
        setattr(broken.resource_spans[0].scope_spans[0].spans[0], field, value)
        with pytest.raises(MalformedOtlpError, match=reason):
            convert(broken, max_event_bytes=LIMIT)


def test_otlp_json_with_hex_ids_reads_as_the_protobuf_does() -> None:
    with recording_provider() as (provider, exporter):
        llm_span(provider, gen_ai())
        request = otlp_request(exporter.get_finished_spans())
    document = otlp_json(request)
    for span in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        span["traceId"] = span["traceId"].upper()  # case-insensitive
    document["resourceSpans"][0]["someFutureField"] = {"x": 1}  # unknown fields are ignored
    from_json = decode_request(json.dumps(document).encode(), "json")
    assert from_json == request
    assert convert(from_json, max_event_bytes=LIMIT).events == convert(request, max_event_bytes=LIMIT).events
    with pytest.raises(MalformedOtlpError, match="not hex"):
        document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "zz"
        decode_request(json.dumps(document).encode(), "json")
    for bad in (b"[1]", b"{", b'{"resourceSpans": 5}'):
        with pytest.raises(MalformedOtlpError):
            decode_request(bad, "json")
    with pytest.raises(MalformedOtlpError, match="protobuf"):
        decode_request(b"\xff\xff\xff", "protobuf")


def test_content_types_and_encodings() -> None:
    assert encoding_of("application/x-protobuf") == "protobuf"
    assert encoding_of("application/json; charset=utf-8") == "json"
    with pytest.raises(UnsupportedMediaTypeError):
        encoding_of("text/plain")
    body = b"x" * 1000
    assert decompress(gzip.compress(body), "gzip", max_bytes=1000) == body
    assert decompress(zlib.compress(body), "deflate", max_bytes=1000) == body
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decompress(raw.compress(body) + raw.flush(), "deflate", max_bytes=1000) == body
    with pytest.raises(TooLargeError):
        decompress(gzip.compress(body), "gzip", max_bytes=999)  # a bomb stops at the limit
    with pytest.raises(MalformedOtlpError, match="truncated"):
        decompress(gzip.compress(body)[:-12], "gzip", max_bytes=1000)
    with pytest.raises(UnsupportedMediaTypeError):
        decompress(body, "br", max_bytes=1000)


def test_a_kafka_message_converts_or_says_why_not() -> None:
    with recording_provider() as (provider, exporter):
        llm_span(provider, gen_ai())
        value = otlp_request(exporter.get_finished_spans()).SerializeToString()
    converted = convert_message(value, max_message_bytes=len(value), max_event_bytes=LIMIT)
    assert not isinstance(converted, Invalid) and len(converted.events) == 1
    assert convert_message(value, max_message_bytes=len(value) - 1, max_event_bytes=LIMIT) == Invalid(
        f"oversized: {len(value)} bytes, the limit is {len(value) - 1}")
    assert convert_message(None, max_message_bytes=100, max_event_bytes=LIMIT) == Invalid("empty message: no value")
    bad = convert_message(b"\x0a\xff", max_message_bytes=100, max_event_bytes=LIMIT)
    assert isinstance(bad, Invalid) and bad.reason.startswith("OTLP: not an OTLP ExportTraceServiceRequest")


def test_text_that_is_not_unicode_is_malformed() -> None:
    lone = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi \ud800"}]}])  # escaped: "\\ud800"
    with recording_provider() as (provider, exporter):
        llm_span(provider, gen_ai(**{"gen_ai.input.messages": lone}))
        request = otlp_request(exporter.get_finished_spans())
    with pytest.raises(MalformedOtlpError, match="not Unicode"):
        convert(request, max_event_bytes=LIMIT)
    document = json.dumps(otlp_json(request)).replace('"chat gpt-4o"', '"chat \\ud800"')
    with pytest.raises(MalformedOtlpError, match=r"[Ss]urrogate"):
        decode_request(document.encode(), "json")
