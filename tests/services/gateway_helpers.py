"""Helpers for the HTTP gateway's tests: keys, a gateway served by the real uvicorn on a free loopback port,
events to post, and reading the topic back."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from kafka import KafkaConsumer

from flywheel_feedback.services.gateway.app import gateway_app
from flywheel_feedback.services.gateway.server import HttpServer
from flywheel_feedback.services.settings import GatewaySettings, KafkaSettings

SERVER_KEY = "sk_test_" + "s" * 24
APP_KEY = "sk_test_app_" + "a" * 24  # bound to app "support-bot"
BROWSER_KEY = "pk_test_" + "b" * 24
TOKEN_SECRET = "token-secret-" + "t" * 24
ORIGIN = "https://app.example.com"
SECRETS = (SERVER_KEY, APP_KEY, BROWSER_KEY, TOKEN_SECRET)


def keys_env() -> dict[str, Any]:
    return {
        "server_keys": [{"id": "backend", "key": SERVER_KEY}, {"id": "bot", "key": APP_KEY, "app": "support-bot"}],
        "browser_keys": [{"id": "web", "key": BROWSER_KEY, "origins": [ORIGIN], "rate_per_s": 2, "burst": 10}],
        "token_secret": TOKEN_SECRET,
    }


def gateway_settings(bootstrap: str, topic: str, **overrides: Any) -> GatewaySettings:
    options: dict[str, Any] = {"topic": topic, "kafka": KafkaSettings(bootstrap_servers=bootstrap), **keys_env()}
    options.update(overrides)
    return GatewaySettings(**options)


@contextmanager
def running_gateway(settings: GatewaySettings, *, wait_for_kafka: bool = True) -> Iterator[str]:
    """The gateway's app on the real uvicorn, 127.0.0.1 and a free port; yields its base URL."""
    server = HttpServer(gateway_app(settings), host="127.0.0.1", port=0, name="test-gateway").start()
    try:
        if wait_for_kafka:
            deadline = time.monotonic() + 30
            while httpx.get(f"{server.url}/healthz").status_code != 200:
                assert time.monotonic() < deadline, "the gateway did not connect to Kafka"
                time.sleep(0.1)
        yield server.url
    finally:
        server.stop()


def interaction(iid: str, *, app: str = "support-bot", event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or f"e-{uuid.uuid4().hex}", "type": "interaction", "ts": "2026-11-27T10:00:00Z",
        "interaction_id": iid, "session_id": "s-1", "user_id": "u-1", "app": app, "task": "reply",
        "model": {"id": "m", "version": "1"}, "input": {"prompt": "How do I reset my password?"},
        "output": "Open Settings.",
    }


def feedback(iid: str, kind: str = "copy", *, event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id or f"e-{uuid.uuid4().hex}", "type": kind, "ts": "2026-11-27T10:00:05Z",
            "interaction_id": iid, **fields}


def auth(key: str, *, origin: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if origin is not None:
        headers["Origin"] = origin
    return headers


def consume(bootstrap: str, topic: str, *, expect: int, timeout_s: float = 20.0) -> list[Any]:
    """Every message on `topic` (at least `expect` of them, waiting up to `timeout_s`)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            messages.extend(consumer)
            if len(messages) >= expect:
                # a little longer: anything beyond what was expected would be a duplicate
                messages.extend(consumer)
                break
    finally:
        consumer.close()
    return messages


def metric(base_url: str, name: str, **labels: str) -> float:
    """A sample of /metrics (0.0 when absent), labels in any order."""
    text = httpx.get(f"{base_url}/metrics").text
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match and match.group(1) == name:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            if found == labels:
                return float(match.group(3))
    return 0.0


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()
