"""The readiness and liveness logic of `flywheel serve` (services/serve/health.py) and the HTTP routes that answer
them, without servers: probes here are plain functions that answer or raise, as the real ones do."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from kafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from flywheel_feedback.services.gateway.app import build_app, registry_metrics
from flywheel_feedback.services.lake.store import LocalStore, open_store
from flywheel_feedback.services.serve.app import FlywheelServer, ServeSettings
from flywheel_feedback.services.serve.health import (
    LIVENESS_STALE_S,
    Dependencies,
    Heartbeat,
    describe_error,
    retry_delay,
)
from flywheel_feedback.services.serve.probes import KafkaProbe, argilla_probe, lake_probe
from flywheel_feedback.services.settings import KafkaSettings
from tests.conftest import free_port, require


def unreachable() -> None:
    raise ConnectionError("Kafka at 127.0.0.1:9: KafkaConnectionError: 111 ECONNREFUSED")


def test_readiness_is_every_dependency_answering_with_the_failing_ones_reasons() -> None:
    answers = {"up": True}

    def lake() -> None:
        if not answers["up"]:
            raise ConnectionError("the lake at s3://b/p: EndpointConnectionError")

    deps = Dependencies({"kafka": lambda: None, "lake": lake}, interval_s=2, timeout_s=2)
    ready, detail = deps.readiness()
    assert not ready and detail["kafka"]["reason"] == "kafka: not probed yet"
    deps.probe_once("kafka")
    deps.probe_once("lake")
    assert deps.readiness()[0]

    answers["up"] = False
    deps.probe_once("lake")
    ready, detail = deps.readiness()
    assert not ready and detail["kafka"]["ok"] and not detail["lake"]["ok"]
    assert detail["lake"]["reason"] == "ConnectionError: the lake at s3://b/p: EndpointConnectionError"
    answers["up"] = True
    deps.probe_once("lake")
    assert deps.readiness()[0]


def test_a_probe_that_stops_answering_counts_as_failing() -> None:
    deps = Dependencies({"argilla": lambda: None}, interval_s=2, timeout_s=2)
    deps.probe_once("argilla")
    assert deps.stale_after_s == 7  # within the 10 s bound even when the probe hangs
    ready, detail = deps.readiness(now=time.monotonic() + deps.stale_after_s + 0.5)
    assert not ready and "has not answered for" in detail["argilla"]["reason"]


def test_probe_threads_answer_within_their_interval() -> None:
    deps = Dependencies({"kafka": unreachable}, interval_s=0.05, timeout_s=0.05)
    deps.start()
    try:
        deadline = time.monotonic() + 5
        while deps.checks["kafka"].answered_at is None and time.monotonic() < deadline:
            time.sleep(0.01)
        ready, detail = deps.readiness()
        assert not ready and "ECONNREFUSED" in detail["kafka"]["reason"]
    finally:
        deps.stop()


def test_liveness_is_a_recent_heartbeat() -> None:
    beat = Heartbeat()
    assert beat.liveness()[0]
    assert not beat.liveness(now=beat.last + LIVENESS_STALE_S + 1)[0]


def test_failed_stages_back_off_exponentially_capped_and_never_later_than_their_interval() -> None:
    delays = [retry_delay(n, base_s=1, cap_s=60, interval_s=3600) for n in range(0, 9)]
    assert delays == [3600, 1, 2, 4, 8, 16, 32, 60, 60]
    assert retry_delay(5, base_s=1, cap_s=60, interval_s=5) == 5


def test_error_texts_name_their_type_once() -> None:
    assert describe_error(KafkaTimeoutError("Failed to update metadata")) == (
        "KafkaTimeoutError: Failed to update metadata"
    )
    assert describe_error(RuntimeError("push stopped")) == "RuntimeError: push stopped"
    assert describe_error(TimeoutError()) == "TimeoutError"


def test_livez_readyz_and_healthz_answer_their_own_checks() -> None:
    app = build_app(
        health=lambda: (False, {"status": "failing"}),
        live=lambda: (True, {"status": "ok"}),
        ready=lambda: (False, {"status": "not ready", "reasons": ["lake: unreachable"]}),
        metrics=registry_metrics(CollectorRegistry()),
    )
    with TestClient(app) as http:
        assert http.get("/livez").status_code == 200
        answer = http.get("/readyz")
        assert answer.status_code == 503 and answer.json()["reasons"] == ["lake: unreachable"]
        assert http.get("/healthz").status_code == 503


def test_a_server_shutting_down_is_not_ready_whatever_its_dependencies_say(tmp_path: Path) -> None:
    server = FlywheelServer(ServeSettings(), LocalStore(tmp_path / "lake"))
    server.dependencies.probe_once("lake")  # a local lake answers
    assert server.readiness()[1]["dependencies"]["lake"]["ok"]
    server.draining = True
    ready, detail = server.readiness()
    assert not ready and detail["reasons"][0] == "shutting down"


@pytest.mark.argilla
def test_the_argilla_probe_answers_for_the_real_server_and_names_a_closed_port() -> None:
    argilla_probe(require("FLYWHEEL_TEST_ARGILLA_URL"), timeout_s=2)()
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionError, match=f"Argilla at {closed}: ConnectError"):
        argilla_probe(closed, timeout_s=2)()


@pytest.mark.s3
def test_the_lake_probe_gives_up_quickly_on_a_closed_port(s3_url: str, s3_options: dict[str, str]) -> None:
    lake_probe(open_store(s3_url, **s3_options), timeout_s=2)()
    options = {**s3_options, "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    with pytest.raises(ConnectionError, match="the lake at s3://"):
        lake_probe(open_store(s3_url, **options), timeout_s=2)()


@pytest.mark.kafka
def test_the_kafka_probe_measures_lag_and_names_a_closed_port(kafka_bootstrap: str, kafka_topic: str) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(7):
        producer.send(kafka_topic, b"x", partition=i % 3)
    producer.flush(30)
    producer.close()
    lags: list[float] = []
    KafkaProbe(KafkaSettings(bootstrap_servers=kafka_bootstrap), topic=kafka_topic, group=f"{kafka_topic}-none",
               timeout_s=2, on_lag=lags.append)()
    assert lags == [7]  # nothing committed by that group
    closed = f"127.0.0.1:{free_port()}"
    probe = KafkaProbe(KafkaSettings(bootstrap_servers=closed), topic=kafka_topic, group="g", timeout_s=2,
                       on_lag=lags.append)
    with pytest.raises(ConnectionError, match=f"Kafka at {closed}"):
        probe()
    assert math.isnan(lags[-1])
