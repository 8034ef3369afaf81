"""The OTLP route's own Kafka producer is closed when the gateway stops: through the real gateway on uvicorn and
the shared Kafka, its polling thread is gone once the server has stopped."""

from __future__ import annotations

import threading
from typing import Any, cast

import httpx
import pytest
from starlette.routing import Route

from flywheel_feedback.services.gateway.app import gateway_app
from flywheel_feedback.services.gateway.otlp_route import TRACES_PATH, OtlpTraces
from flywheel_feedback.services.gateway.server import HttpServer
from flywheel_feedback.services.otlp.produce import KafkaEventProducer

from .gateway_helpers import SERVER_KEY, auth, gateway_settings
from .otel_helpers import otlp_request, recording_provider
from .test_otlp_convert import gen_ai, llm_span

pytestmark = [pytest.mark.kafka]

PROTOBUF = {**auth(SERVER_KEY), "Content-Type": "application/x-protobuf"}


def one_call() -> bytes:
    with recording_provider() as (provider, exporter):
        llm_span(provider, gen_ai())
        return otlp_request(exporter.get_finished_spans()).SerializeToString()


def pollers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "otlp-producer"}


def test_the_gateway_closes_the_otlp_producer_when_it_stops(kafka_bootstrap: str, kafka_topic: str) -> None:
    app = gateway_app(gateway_settings(kafka_bootstrap, kafka_topic))
    route = next(r for r in app.routes if isinstance(r, Route) and r.path == TRACES_PATH)
    traces = cast(Any, route.endpoint).__self__  # the bound OtlpTraces.handle
    assert isinstance(traces, OtlpTraces)
    before = pollers()
    server = HttpServer(app, host="127.0.0.1", port=0, name="test-gateway").start()
    try:
        answer = httpx.post(f"{server.url}/v1/traces", content=one_call(), headers=PROTOBUF, timeout=60)
        assert answer.status_code == 200, answer.content
        producer = traces.producer
        assert isinstance(producer, KafkaEventProducer) and not producer.closed
        ours = pollers() - before
        assert len(ours) == 1  # the producer the first request made
    finally:
        server.stop()
    assert producer.closed
    assert not any(t.is_alive() for t in ours)
