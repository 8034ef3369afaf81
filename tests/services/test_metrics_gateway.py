"""`flywheel gateway`'s /metrics scraped over HTTP from the real uvicorn with the real Kafka behind it: request
durations, OTLP spans dropped and requests refused by reason, build info and readiness; promtool accepts it."""

from __future__ import annotations

import httpx
import pytest

from .gateway_helpers import SERVER_KEY, auth, gateway_settings, interaction, running_gateway
from .metrics_helpers import histogram_count, promtool_check, samples, scrape, value
from .otel_helpers import otlp_request, recording_provider
from .test_otlp_convert import gen_ai, llm_span

pytestmark = [pytest.mark.kafka]

PROTOBUF = {**auth(SERVER_KEY), "Content-Type": "application/x-protobuf"}  # auth() says JSON


def traces(*, other_spans: int) -> bytes:
    with recording_provider() as (provider, exporter):
        llm_span(provider, gen_ai())
        for i in range(other_spans):
            provider.get_tracer("app").start_span(f"db query {i}").end()
        return otlp_request(exporter.get_finished_spans()).SerializeToString()


def test_a_gateway_scrape_counts_what_it_took_and_refused_and_passes_promtool(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    with running_gateway(gateway_settings(kafka_bootstrap, kafka_topic)) as url:
        for i in range(3):
            answer = httpx.post(f"{url}/v1/events", json=[interaction(f"i-{i}")], headers=auth(SERVER_KEY))
            assert answer.status_code == 200, answer.text
        assert httpx.post(f"{url}/v1/traces", content=traces(other_spans=2), headers=PROTOBUF).status_code == 200
        assert httpx.post(f"{url}/v1/traces", content=b"\xff\x00 not protobuf", headers=PROTOBUF).status_code == 400
        plain_text = {**auth(SERVER_KEY), "Content-Type": "text/plain"}
        assert httpx.post(f"{url}/v1/traces", content=b"spans", headers=plain_text).status_code == 415
        text = scrape(url)
    found = samples(text)
    assert histogram_count(found, "flywheel_gateway_request_duration_seconds") == 3
    assert histogram_count(found, "flywheel_gateway_ack_seconds") == 3
    assert value(found, "flywheel_gateway_events_total", outcome="accepted", key="backend") == 3
    assert value(found, "flywheel_otlp_interactions_total") == 1
    assert value(found, "flywheel_otlp_dropped_spans_total", reason="not_llm") == 2
    assert value(found, "flywheel_otlp_rejected_requests_total", reason="malformed") == 1
    assert value(found, "flywheel_otlp_rejected_requests_total", reason="unsupported_media_type") == 1
    assert value(found, "flywheel_otlp_rejected_requests_total", reason="kafka_unavailable") == 0
    assert value(found, "flywheel_ready") == 1
    assert [k for k in found if k[0] == "flywheel_build_info"]
    promtool_check(text)
