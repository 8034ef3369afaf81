"""`POST /v1/traces` takes the gateway's server keys, as /v1/events does, over real HTTP against the real uvicorn
and Kafka: no key, an unknown key, a browser key and a server key sent from a page are refused with a reason
(a google.rpc.Status) and counted; an app-bound key's spans of another app are dropped; with no keys configured
every request is refused; no key reaches a log."""

from __future__ import annotations

import json
import logging
import uuid

import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from flywheel_feedback.services.otlp.convert import OTHER_APP

from .gateway_helpers import (
    APP_KEY,
    BROWSER_KEY,
    ORIGIN,
    SECRETS,
    SERVER_KEY,
    consume,
    gateway_settings,
    metric,
    running_gateway,
)
from .otel_helpers import otlp_request, recording_provider
from .test_otlp_convert import gen_ai, llm_span

pytestmark = pytest.mark.kafka

PROTOBUF = "application/x-protobuf"
REJECTIONS = "flywheel_gateway_rejections_total"


def traces(service: str) -> bytes:
    """An export of one model call of the app `service` (its resource's service.name)."""
    with recording_provider(service) as (provider, exporter):
        llm_span(provider, gen_ai())
        return otlp_request(exporter.get_finished_spans()).SerializeToString()


def status_of(answer: httpx.Response) -> Status:
    assert answer.headers["content-type"] == PROTOBUF
    return Status.FromString(answer.content)


def test_traces_need_a_server_key(kafka_bootstrap: str, kafka_topic: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = traces("support-bot")
    with running_gateway(gateway_settings(kafka_bootstrap, kafka_topic)) as url, httpx.Client(base_url=url) as http:
        def post(headers: dict[str, str], content: bytes = body) -> httpx.Response:
            return http.post("/v1/traces", content=content, headers={"Content-Type": PROTOBUF, **headers})

        missing = post({})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "OTEL_EXPORTER_OTLP_HEADERS" in status_of(missing).message
        unknown = post({"Authorization": "Bearer sk_guessed_" + "x" * 20})
        assert unknown.status_code == 401 and status_of(unknown).message == "unknown key"
        assert post({"Authorization": f"Basic {SERVER_KEY}"}).status_code == 401  # only Bearer presents a key
        for headers in ({"Authorization": f"Bearer {BROWSER_KEY}", "Origin": ORIGIN},
                        {"X-Flywheel-Key": BROWSER_KEY}):
            browser = post(headers)
            assert browser.status_code == 403, headers
            assert "browser key" in status_of(browser).message
        leaked = post({"Authorization": f"Bearer {SERVER_KEY}", "Origin": ORIGIN})
        assert leaked.status_code == 403 and "stay on servers" in status_of(leaked).message
        json_refusal = http.post("/v1/traces", json={}, headers={"Origin": ORIGIN, "X-Flywheel-Key": BROWSER_KEY})
        assert json_refusal.status_code == 403 and "browser key" in json_refusal.json()["message"]  # its encoding
        for code, count in {"no_key": 1, "unknown_key": 2, "browser_key": 3, "server_key_in_browser": 1}.items():
            assert metric(url, REJECTIONS, code=code) == count, code

        # a server key, as Authorization or X-Flywheel-Key; an app-bound key drops the spans of other apps
        assert post({"Authorization": f"Bearer {SERVER_KEY}"}).status_code == 200
        app_bound = post({"X-Flywheel-Key": APP_KEY}, traces("support-bot"))
        assert app_bound.status_code == 200
        assert not ExportTraceServiceResponse.FromString(app_bound.content).HasField("partial_success")
        other = post({"X-Flywheel-Key": APP_KEY}, traces("billing"))
        assert other.status_code == 200
        dropped = ExportTraceServiceResponse.FromString(other.content).partial_success
        assert dropped.rejected_spans == 1 and OTHER_APP in dropped.error_message

    landed = [json.loads(m.value) for m in consume(kafka_bootstrap, kafka_topic, expect=2)]
    assert [e["app"] for e in landed] == ["support-bot", "support-bot"]
    for secret in (*SECRETS, "sk_guessed_"):
        assert secret not in caplog.text, "a key reached the log"


def test_with_no_keys_configured_every_trace_export_is_refused(kafka_bootstrap: str) -> None:
    topic = f"otlp-nokeys-{uuid.uuid4().hex[:8]}"
    settings = gateway_settings(kafka_bootstrap, topic, server_keys=[], browser_keys=[])
    with running_gateway(settings) as url:
        for headers in ({}, {"Authorization": f"Bearer {SERVER_KEY}"}):
            answer = httpx.post(f"{url}/v1/traces", content=traces("support-bot"),
                                headers={"Content-Type": PROTOBUF, **headers})
            assert answer.status_code == 401, headers
        assert metric(url, REJECTIONS, code="no_key") == metric(url, REJECTIONS, code="unknown_key") == 1
