"""Real clients end to end: the `openai` SDK instrumented by each of the three OpenTelemetry instrumentations, in an
app process of its own, calls a local OpenAI-compatible server; the OpenTelemetry SDK's OTLP/HTTP exporter sends
the spans to `POST /v1/traces` (under uvicorn); the route produces to the real Kafka, capture writes the lake, and
the interactions there have the model, input, output, session and latency the calls had."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.otlp.produce import KafkaEventProducer
from flywheel_feedback.services.settings import KafkaSettings, OtlpSettings

from . import otel_app
from .kafka_helpers import capture_settings, capture_until
from .otel_helpers import RESPONSE_MODEL_SUFFIX, FakeOpenAI, answer_to, serve_otlp

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

APP = Path(otel_app.__file__)
DELAY_S = 0.15
# what each instrumentation needs to record message content (the official one records none by default)
CONTENT_ON: dict[str, dict[str, str]] = {
    "openai-v2": {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
                  "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"},
    "openinference": {},
    "openllmetry": {},
}


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[KafkaEventProducer]:
    made = KafkaEventProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap), timeout_s=20)
    try:
        yield made
    finally:
        made.close()


def run_app(instrumentation: str, *, openai_url: str, otlp_url: str, session: str, user: str,
            compression: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "OPENAI_BASE_URL": openai_url,
        "OPENAI_API_KEY": "sk-test",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url,
        "OTEL_EXPORTER_OTLP_COMPRESSION": compression,
        **CONTENT_ON[instrumentation],
    }
    done = subprocess.run([sys.executable, str(APP), instrumentation, session, user], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("instrumentation", "compression"),
    [("openai-v2", "gzip"), ("openinference", "none"), ("openllmetry", "gzip")],
)
def test_instrumented_openai_calls_land_as_interactions(
    instrumentation: str, compression: str, kafka_bootstrap: str, kafka_topic: str,
    producer: KafkaEventProducer, tmp_path: Path,
) -> None:
    started = datetime.now(UTC)
    session, user = f"s-{instrumentation}", f"u-{instrumentation}"
    with FakeOpenAI(delay_s=DELAY_S) as server, serve_otlp(OtlpSettings(topic=kafka_topic), producer) as url:
        app = run_app(instrumentation, openai_url=server.base_url, otlp_url=url, session=session, user=user,
                      compression=compression)
    finished = datetime.now(UTC)
    assert len(app["ids"]) == 2, app

    store = LocalStore(tmp_path / "lake")
    settings = capture_settings(kafka_bootstrap, kafka_topic, str(tmp_path / "lake"))
    capture_until(settings, store, lambda: read_events(store).height >= 2)
    frame = read_events(store).sort("ts")
    assert frame.height == 2  # the app's own span and nothing else
    assert frame.get_column("interaction_id").to_list() == app["ids"]  # the ids the app holds for feedback

    conversation = app["messages"]
    inputs = [conversation[:2], conversation]
    for row, sent, output in zip(frame.iter_rows(named=True), inputs, app["outputs"], strict=True):
        assert row["type"] == "interaction"
        assert row["model"] == {"id": otel_app.MODEL, "version": otel_app.MODEL + RESPONSE_MODEL_SUFFIX,
                                "provider": "openai"}
        assert row["input"] == {"prompt": None, "messages": sent}
        assert row["output"] == output == answer_to(sent)
        assert (row["session_id"], row["user_id"]) == (session, user)
        assert (row["app"], row["task"]) == ("support-bot", "reply-draft")
        assert started <= row["ts"] <= finished
        assert DELAY_S * 1000 <= row["latency_ms"] < DELAY_S * 1000 + 3000
    latencies = frame.get_column("latency_ms").to_list()
    words = len(answer_to(conversation).split(" "))
    assert latencies[1] >= DELAY_S * 1000 + 10 * words  # the streamed call lasts until its last chunk
    metadata = [json.loads(m) for m in frame.get_column("metadata")]
    assert [m["response_id"] for m in metadata] == [r"chatcmpl-1", "chatcmpl-2"]
    assert metadata[0]["usage"] == {"input_tokens": 20, "output_tokens": 7}
    assert frame.filter(pl.col("kafka_topic") != kafka_topic).is_empty()
