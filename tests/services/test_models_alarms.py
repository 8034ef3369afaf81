"""Alarm metrics and the alarm webhook on alarms built here (a real HTTP receiver on loopback)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prometheus_client import generate_latest

from flywheel_feedback.labeling.changes import Alarm
from flywheel_feedback.services.models.metrics import ModelChangeMetrics
from flywheel_feedback.services.models.webhook import WebhookError, post_alarms

AT = datetime(2026, 11, 3, 12, tzinfo=UTC)


def alarm(measure: str, version: str | None = "v1") -> Alarm:
    series = {"model_id": "m", "provider": "p", "app": "a", "task": "t"}
    if version is not None:
        series["model_version"] = version
    return Alarm(series=dict(series), measure=measure, direction="up", changed_at=AT,
                 alarmed_at=AT + timedelta(hours=1), before=0.0, after=0.05, change=0.05, ci_low=0.04,
                 ci_high=0.06, confidence=0.999, statistic=9.0, threshold=5.0)


def test_metrics_show_the_standing_alarms_and_drop_the_gone() -> None:
    metrics = ModelChangeMetrics()
    assert [a.measure for a in metrics.show([alarm("fence_share"), alarm("copy_rate", None)])] == ["fence_share",
                                                                                                   "copy_rate"]
    text = generate_latest(metrics.registry).decode()
    labels = 'app="a",direction="up",measure="fence_share",model_id="m",model_version="v1"'
    assert f"flywheel_model_change_alarm{{{labels}" in text
    assert 'measure="copy_rate",model_id="m",model_version=""' in text  # across versions: no version label value
    assert metrics.show([alarm("fence_share")]) == []  # standing, not new
    text = generate_latest(metrics.registry).decode()
    assert 'measure="copy_rate"' not in text.split("flywheel_model_change_alarms_total")[0]
    assert 'flywheel_model_change_alarms_total{model_id="m"} 2.0' in text


@pytest.fixture
def failing_receiver() -> Iterator[str]:
    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the http.server hook's name
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook?token=very-secret-token"
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_refusing_webhook_raises_without_revealing_its_url(failing_receiver: str) -> None:
    with pytest.raises(WebhookError) as raised:
        post_alarms(failing_receiver, [alarm("fence_share")], timeout_s=5)
    assert "very-secret-token" not in str(raised.value) and "127.0.0.1" not in str(raised.value)
    with pytest.raises(WebhookError, match="http"):
        post_alarms("file:///etc/passwd", [alarm("fence_share")])
    post_alarms(failing_receiver, [])  # nothing to say: no request at all
