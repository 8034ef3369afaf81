"""OTLP trace exports on a Kafka topic, as an OpenTelemetry Collector's Kafka exporter writes them (encoding
`otlp_proto`: one ExportTraceServiceRequest protobuf per message), read by capture beside the events topic: their
LLM spans land in the lake as interactions, exactly once by Kafka offsets; unreadable messages are dead-lettered
whole, with the reason."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata, TopicPartition
from opentelemetry import trace

from flywheel_feedback.client import Emitter, new_event_id, now, otel
from flywheel_feedback.schemas.events import Rating
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.lake.tables import RAW_EVENTS
from flywheel_feedback.services.serve.metrics import FlywheelMetrics

from ..conftest import unique
from .kafka_helpers import capture_settings, capture_until
from .metrics_helpers import samples
from .metrics_helpers import value as sample_value
from .otel_helpers import otlp_request, recording_provider
from .test_capture_kafka import committed, end_offsets

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T0 = 1_795_000_000_000_000_000  # ns


@pytest.fixture
def otlp_topic(kafka_bootstrap: str) -> Iterator[str]:
    name = unique("test-otlp")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(name, 2, 1)])
    try:
        yield name
    finally:
        admin.delete_topics([name])
        admin.close()


def chat_attributes(question: str, answer: str) -> dict[str, str | int]:
    """What a hand-instrumented app records under the current GenAI conventions."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet",
        "gen_ai.response.model": "claude-sonnet-2026-01-01",
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": question}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]),
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 5,
    }


def traces(n: int, *, run: str) -> tuple[list[tuple[bytes, bytes]], dict[str, dict[str, object]]]:
    """`n` app requests, one trace each (an HTTP span around two model calls), one message per trace keyed by its
    trace id as the Collector's exporter does with partition_traces_by_id; and what each interaction must be."""
    messages: list[tuple[bytes, bytes]] = []
    expected: dict[str, dict[str, object]] = {}
    with recording_provider(service="kb-search") as (provider, exporter):
        otel.install(provider)
        tracer = provider.get_tracer("kb-search")
        for i in range(n):
            exporter.clear()
            start = T0 + i * 10_000_000_000
            session = f"{run}-s{i % 3}"
            root = tracer.start_span("GET /search", start_time=start)
            with trace.use_span(root, end_on_exit=False), otel.interactions(session_id=session, user_id=f"u{i}"):
                for turn in range(2):
                    question, answer = f"q{i}.{turn} {run}", f"a{i}.{turn}"
                    began = start + turn * 1_000_000_000
                    span = tracer.start_span("chat claude-sonnet", start_time=began,
                                             attributes=chat_attributes(question, answer))
                    with trace.use_span(span, end_on_exit=False):
                        iid = otel.interaction_id()  # the app's handle for feedback, from the current span
                    span.end(end_time=began + (300 + i) * 1_000_000)
                    expected[iid] = {"session_id": session, "user_id": f"u{i}", "question": question,
                                     "output": answer, "latency_ms": 300 + i}
            root.end(end_time=start + 3_000_000_000)
            spans = exporter.get_finished_spans()
            assert spans[-1].context is not None
            messages.append((f"{spans[-1].context.trace_id:032x}".encode(), otlp_request(spans).SerializeToString()))
    return messages, expected


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def test_collector_messages_on_a_topic_land_as_interactions_exactly_once(
    kafka_bootstrap: str, kafka_topic: str, otlp_topic: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    good, expected = traces(12, run=run)
    with recording_provider() as (provider, exporter):
        provider.get_tracer("db").start_span("SELECT tickets").end()  # no model call in it
        no_llm = otlp_request(exporter.get_finished_spans()).SerializeToString()
        span = provider.get_tracer("x").start_span("chat", attributes={
            **chat_attributes("q", "a"), "gen_ai.input.messages": "[{broken"})
        span.end()
        unreadable = otlp_request(exporter.get_finished_spans()).SerializeToString()  # a good span and a bad one
    garbage = b"\x0a\x05not a protobuf"
    produce(kafka_bootstrap, otlp_topic, [*good[:6], (b"k", no_llm), (b"k", garbage), (b"k", unreadable), *good[6:]])
    # feedback about one of them, from the app's emitter on the events topic
    about = next(iter(expected))
    with Emitter(kafka_bootstrap, topic=kafka_topic) as emitter:
        emitter.emit(Rating(event_id=new_event_id(), ts=now(), interaction_id=about, thumbs="up"))

    store = LocalStore(tmp_path / "lake")
    settings = capture_settings(kafka_bootstrap, kafka_topic, str(tmp_path / "lake"), otlp_topic=otlp_topic)
    total = len(expected) + 1
    metrics = FlywheelMetrics()  # serve's, which capture tells of its flushes and drops
    service = capture_until(settings, store, lambda: read_events(store).height >= total, observer=metrics)

    frame = read_events(store)
    assert frame.height == total
    interactions = frame.filter(pl.col("type") == "interaction")
    assert set(interactions.get_column("interaction_id")) == set(expected)
    for row in interactions.iter_rows(named=True):
        want = expected[row["interaction_id"]]
        assert row["kafka_topic"] == otlp_topic
        assert row["model"] == {"id": "claude-sonnet", "version": "claude-sonnet-2026-01-01", "provider": "anthropic"}
        assert row["input"] == {"prompt": None, "messages": [{"role": "user", "content": want["question"]}]}
        assert (row["output"], row["session_id"], row["user_id"]) == (want["output"], want["session_id"],
                                                                       want["user_id"])
        assert (row["latency_ms"], row["app"], row["task"]) == (want["latency_ms"], "kb-search", "chat")
    rating = frame.filter(pl.col("type") == "rating")
    assert rating.get_column("interaction_id").to_list() == [about]  # feedback joins its interaction by id
    assert service.batcher.otlp_dropped_spans == 12 + 1  # the 12 HTTP spans and the message without a model call
    found = samples(metrics.render().decode())
    assert sample_value(found, "flywheel_otlp_dropped_spans_total", reason="not_llm") == 13
    assert sample_value(found, "flywheel_capture_events_total") == total
    assert sample_value(found, "flywheel_capture_flush_duration_seconds_count") >= 1

    dead = dead_letters(kafka_bootstrap, f"{kafka_topic}.dlq", 2)
    assert "OTLP: not an OTLP ExportTraceServiceRequest protobuf" in dead[garbage]["flywheel-dlq-reason"]
    assert "gen_ai.input.messages is not valid JSON" in dead[unreadable]["flywheel-dlq-reason"]
    assert dead[unreadable]["flywheel-source-topic"] == otlp_topic
    assert committed(kafka_bootstrap, otlp_topic, settings.group_id) == end_offsets(kafka_bootstrap, otlp_topic)

    # A replay from the start (lost consumer offsets) adds nothing: the lake's commits hold the offsets.
    rewind(kafka_bootstrap, otlp_topic, settings.group_id)
    ends = end_offsets(kafka_bootstrap, otlp_topic)
    capture_until(settings, store, lambda: committed(kafka_bootstrap, otlp_topic, settings.group_id) == ends)
    assert delta.scan(store, RAW_EVENTS).select(pl.len()).collect().item() == total  # rows, not deduplicated


def dead_letters(bootstrap: str, topic: str, count: int) -> dict[bytes, dict[str, str]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000, group_id=unique("dlq-reader"))
    dead: dict[bytes, dict[str, str]] = {}
    for message in consumer:
        dead[message.value] = {k: v.decode() for k, v in message.headers}
        if len(dead) == count:
            break
    consumer.close()
    return dead


def rewind(bootstrap: str, topic: str, group: str) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.commit({tp: OffsetAndMetadata(0, "", -1) for tp in partitions})
    consumer.close()
    assert set(committed(bootstrap, topic, group).values()) == {0}
