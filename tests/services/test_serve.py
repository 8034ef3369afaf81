"""`flywheel serve` against the real stack: Kafka in, a lake on S3, Argilla queues, a slice renewed and
announced, and /metrics moving as traffic flows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

from flywheel_feedback.client import Emitter
from flywheel_feedback.services.annotation.layout import QUEUES
from flywheel_feedback.services.simulator.traffic import SimulationConfig, generate
from tests.conftest import REPO, free_port, require
from tests.services.metrics_helpers import promtool_check, scrape

pytestmark = [pytest.mark.kafka, pytest.mark.s3, pytest.mark.argilla, pytest.mark.slow]

SLICE = """
name = "serve-eval"
size = 200
strata = ["task", "model_version", "topic_cluster"]
min_confidence = 0.6
window = "30d"
max_age = "30d"
drift_threshold = 0.05
clusters = 8
renewal_budget = 20
"""


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^(flywheel_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass  # the ops server is not up yet
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s:.0f}s\n{log.read_text()[-4000:]}")


GATEWAY_KEY = "sk_serve_" + "k" * 24


def send(bootstrap: str, topic: str, interactions: int, seed: int) -> None:
    with Emitter(bootstrap, topic=topic) as emitter:
        for event, _ in generate(SimulationConfig(interactions=interactions, seed=seed)):
            emitter.send_raw(json.dumps(event).encode(), key=event["interaction_id"].encode())


def test_serve_captures_labels_pushes_renews_and_its_metrics_move(
    kafka_bootstrap: str, kafka_topic: str, s3_url: str, s3_options: dict[str, Any], tmp_path: Path
) -> None:
    import argilla as rg

    argilla_url, api_key = require("FLYWHEEL_TEST_ARGILLA_URL"), require("FLYWHEEL_TEST_ARGILLA_API_KEY")
    prefix = f"fw-serve-{uuid.uuid4().hex[:8]}-"
    ops_port = free_port()
    hook_url = f"http://127.0.0.1:{ops_port}/argilla-webhook"  # the webhook is a route of serve's one app
    definitions = tmp_path / "slices"
    definitions.mkdir()
    (definitions / "serve-eval.toml").write_text(SLICE)
    announce_topic = f"{kafka_topic}.slices"
    env = {
        **os.environ,
        "FLYWHEEL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "FLYWHEEL_CAPTURE_TOPIC": kafka_topic,
        "FLYWHEEL_CAPTURE_DLQ_TOPIC": f"{kafka_topic}.dlq",
        "FLYWHEEL_CAPTURE_GROUP_ID": f"{kafka_topic}-serve",
        "FLYWHEEL_CAPTURE_FLUSH_INTERVAL_S": "0.5",
        "FLYWHEEL_LAKE_URL": s3_url,
        "FLYWHEEL_LAKE_S3_ENDPOINT_URL": s3_options["endpoint_url"],
        "AWS_ACCESS_KEY_ID": s3_options["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": s3_options["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": s3_options["region_name"],
        "FLYWHEEL_LABELER_FOLDS": "3",
        "FLYWHEEL_LABELER_BUDGET_UNCERTAIN": "25",
        "FLYWHEEL_LABELER_BUDGET_SUSPECT": "10",
        "FLYWHEEL_LABELER_BUDGET_CONFLICT": "10",
        "FLYWHEEL_LABELER_BUDGET_AUDIT": "10",
        "FLYWHEEL_ARGILLA_URL": argilla_url,
        "FLYWHEEL_ARGILLA_API_KEY": api_key,
        "FLYWHEEL_ARGILLA_DATASET_PREFIX": prefix,
        "FLYWHEEL_WEBHOOK_PUBLIC_URL": hook_url,
        "FLYWHEEL_GATEWAY_SERVER_KEYS": json.dumps([{"id": "backend", "key": GATEWAY_KEY}]),
        "FLYWHEEL_SLICES_DEFINITIONS_DIR": str(definitions),
        "FLYWHEEL_SLICES_ANNOUNCE_TOPIC": announce_topic,
        "FLYWHEEL_SERVE_PORT": str(ops_port),
        "FLYWHEEL_SERVE_LABEL_INTERVAL_S": "2",
        "FLYWHEEL_SERVE_ANNOTATE_INTERVAL_S": "3",
        "FLYWHEEL_SERVE_RENEW_INTERVAL_S": "4",
        "FLYWHEEL_SERVE_METRICS_INTERVAL_S": "1",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "flywheel_feedback.services.cli", "serve"], env=env, cwd=REPO, stdout=out, stderr=out
        )
    owner = rg.Argilla(api_url=argilla_url, api_key=api_key)
    try:
        send(kafka_bootstrap, kafka_topic, 600, seed=31)
        wait_for("events captured", lambda: metrics(ops_port).get("flywheel_capture_events_total", 0) > 1000, 90, log)
        wait_for(
            "a labeler pass", lambda: metrics(ops_port).get("flywheel_labeler_interactions_total", 0) >= 600, 90, log
        )
        wait_for(
            "a slice published", lambda: 'flywheel_slice_age_seconds{slice="serve-eval"}' in metrics(ops_port), 120, log
        )

        def pushed() -> bool:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset = owner.datasets(name=f"{prefix}uncertain", workspace="default")
                return dataset is not None and len(list(dataset.records(limit=5))) > 0

        wait_for("records pushed to Argilla", pushed, 120, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/healthz", timeout=5) as answer:
            health = json.loads(answer.read())
        assert answer.status == 200 and health["status"] == "ok", health
        assert {"labeler", "slices", "annotation", "webhooks"} <= set(health["components"])
        assert set(health["ready"]["dependencies"]) == {"kafka", "lake", "argilla"} and health["live"]["status"] == "ok"

        before = metrics(ops_port)
        send(kafka_bootstrap, kafka_topic, 300, seed=32)
        # and over HTTP, through the gateway route of the same app
        events = [event for event, _ in generate(SimulationConfig(interactions=20, seed=33))]
        request = urllib.request.Request(f"http://127.0.0.1:{ops_port}/v1/events", data=json.dumps(events).encode(),
                                         headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.loads(answer.read())["accepted"] == len(events)
        wait_for(
            "the figures move",
            lambda: (
                metrics(ops_port).get("flywheel_capture_events_total", 0)
                > before["flywheel_capture_events_total"] + 500
                and metrics(ops_port).get("flywheel_labeler_interactions_total", 0)
                > before["flywheel_labeler_interactions_total"]
            ),
            90,
            log,
        )
        after = metrics(ops_port)
        assert after["flywheel_labeler_passes_total"] > before["flywheel_labeler_passes_total"]
        assert after['flywheel_gateway_events_total{key="backend",outcome="accepted"}'] == len(events)
        assert "flywheel_capture_lag_events" in after
        assert not [name for name in after if "per_second" in name]  # rates are Prometheus' to take
        assert after["flywheel_annotation_push_duration_seconds_count"] >= 1
        assert after["flywheel_annotation_pushed_records_total"] > 0
        promtool_check(scrape(f"http://127.0.0.1:{ops_port}"))
        assert any(k.startswith("flywheel_queue_depth{") for k in after)

        consumer = KafkaConsumer(
            announce_topic,
            bootstrap_servers=kafka_bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=10_000,
            group_id=f"{announce_topic}-reader",
        )
        announcements = [json.loads(m.value) for m in consumer]
        consumer.close()
        assert any("serve-eval" in json.dumps(a) for a in announcements)

        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-4000:]
        text = log.read_text()
        for secret in (api_key, GATEWAY_KEY, s3_options["aws_secret_access_key"]):  # every configured secret
            assert secret not in text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for queue in [*QUEUES, "renewal"]:
                dataset = owner.datasets(name=f"{prefix}{queue}", workspace="default")
                if dataset is not None:
                    dataset.delete()
            for webhook in owner.webhooks:
                if webhook.url == hook_url:
                    webhook.delete()
