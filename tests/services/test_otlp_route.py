"""`POST /v1/traces` as the OTLP/HTTP specification has it, in a minimal Starlette app (nothing running: the
producer here records what it is given, or fails as Kafka would)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence

import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flywheel_feedback.services.gateway.metrics import GatewayMetrics
from flywheel_feedback.services.gateway.otlp_route import otlp_routes
from flywheel_feedback.services.otlp.produce import ProduceError
from flywheel_feedback.services.settings import OtlpSettings

from .otel_helpers import OTLP_KEY, otlp_json, otlp_keys, otlp_request, recording_provider
from .test_otlp_convert import gen_ai, llm_span

PROTOBUF = {"Content-Type": "application/x-protobuf"}
KEY = {"Authorization": f"Bearer {OTLP_KEY}"}


class Recorder:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[str, list[tuple[bytes, bytes]]]] = []

    async def send(self, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> None:
        if self.fail:
            raise ProduceError("broker down")
        self.sent.append((topic, list(messages)))


def client(producer: Recorder, **settings: object) -> TestClient:
    """The route with OTLP_KEY, which every request here presents."""
    routes = otlp_routes(OtlpSettings(topic="events", **settings), keys=otlp_keys(),  # type: ignore[arg-type]
                         metrics=GatewayMetrics(CollectorRegistry()), producer=producer)
    return TestClient(Starlette(routes=routes), headers=KEY)


def request_bytes(*, other_spans: int = 0) -> bytes:
    with recording_provider() as (provider, exporter):
        llm_span(provider, gen_ai())
        for i in range(other_spans):
            provider.get_tracer("app").start_span(f"db query {i}").end()
        return otlp_request(exporter.get_finished_spans()).SerializeToString()


def test_protobuf_gzip_in_protobuf_out_events_keyed_by_interaction_id() -> None:
    producer = Recorder()
    answer = client(producer).post("/v1/traces", content=gzip.compress(request_bytes()),
                                   headers={**PROTOBUF, "Content-Encoding": "gzip"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    response = ExportTraceServiceResponse.FromString(answer.content)
    assert not response.HasField("partial_success")  # all taken
    ((topic, messages),) = producer.sent
    (key, value), = messages
    assert topic == "events"
    assert json.loads(value)["interaction_id"] == key.decode()


def test_dropped_spans_are_a_partial_success() -> None:
    producer = Recorder()
    answer = client(producer).post("/v1/traces", content=request_bytes(other_spans=2), headers=PROTOBUF)
    assert answer.status_code == 200
    response = ExportTraceServiceResponse.FromString(answer.content)
    assert response.partial_success.rejected_spans == 2
    assert response.partial_success.error_message == "2 of 3 spans dropped: 2 not an LLM call"
    assert len(producer.sent[0][1]) == 1


def test_otlp_json_in_json_out() -> None:
    producer = Recorder()
    document = json_format.MessageToDict(ExportTraceServiceResponse())  # an empty request is fine too
    answer = client(producer).post("/v1/traces", json=document)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == {}
    assert producer.sent == []  # nothing to produce
    with recording_provider() as (provider, exporter):
        llm_span(provider, gen_ai())
        provider.get_tracer("app").start_span("db query").end()
        request = otlp_json(otlp_request(exporter.get_finished_spans()))
    answer = client(producer).post("/v1/traces", json=request)
    assert answer.status_code == 200
    assert answer.json() == {
        "partialSuccess": {"rejectedSpans": "1", "errorMessage": "1 of 2 spans dropped: 1 not an LLM call"}
    }
    assert len(producer.sent) == 1


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b"\xff\x00garbage", PROTOBUF, 400, "not an OTLP ExportTraceServiceRequest"),
        (b"{", {"Content-Type": "application/json"}, 400, "invalid JSON"),
        (b"abc", {**PROTOBUF, "Content-Encoding": "gzip"}, 400, "does not decompress"),
        (b"abc", {"Content-Type": "text/plain"}, 415, "unsupported Content-Type"),
        (b"abc", {**PROTOBUF, "Content-Encoding": "br"}, 415, "unsupported Content-Encoding"),
        (b"x" * 2048, PROTOBUF, 413, "over 1024 bytes"),
        (gzip.compress(b"\x00" * 4096), {**PROTOBUF, "Content-Encoding": "gzip"}, 413, "once decompressed"),
    ],
    ids=["protobuf", "json", "gzip", "content-type", "content-encoding", "too-large", "gzip-bomb"],
)
def test_a_request_that_cannot_be_read_is_refused_with_a_status(
    body: bytes, headers: dict[str, str], status: int, reason: str
) -> None:
    producer = Recorder()
    answer = client(producer, max_body_bytes=1024).post("/v1/traces", content=body, headers=headers)
    assert answer.status_code == status
    if headers["Content-Type"] == "application/json":
        message = answer.json()["message"]
    else:
        message = Status.FromString(answer.content).message
    assert reason in message
    assert producer.sent == []


def test_an_unreadable_llm_span_refuses_the_whole_request() -> None:
    with recording_provider() as (provider, exporter):
        llm_span(provider, gen_ai())
        llm_span(provider, gen_ai(**{"gen_ai.input.messages": "[{oops"}))
        body = otlp_request(exporter.get_finished_spans()).SerializeToString()
    producer = Recorder()
    answer = client(producer).post("/v1/traces", content=body, headers=PROTOBUF)
    assert answer.status_code == 400
    assert "spans[1]: gen_ai.input.messages is not valid JSON" in Status.FromString(answer.content).message
    assert producer.sent == []


def test_kafka_refusing_the_events_is_a_503_with_retry_after() -> None:
    answer = client(Recorder(fail=True), retry_after_s=7).post("/v1/traces", content=request_bytes(), headers=PROTOBUF)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "7"
    assert "broker down" in Status.FromString(answer.content).message
