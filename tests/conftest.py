"""Shared fixtures. Integration tests read the addresses of the real services that
deploy/stack.sh started (FLYWHEEL_TEST_* variables, also in .run/stack.env) and fail loudly
when they are missing: a test that claims to talk to Kafka never silently skips."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STACK_ENV = REPO / ".run" / "stack.env"


def _stack_env() -> dict[str, str]:
    values: dict[str, str] = {}
    if STACK_ENV.exists():
        for line in STACK_ENV.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip().strip("'\"")
    values.update({k: v for k, v in os.environ.items() if k.startswith("FLYWHEEL_TEST_")})
    return values


def require(name: str) -> str:
    value = _stack_env().get(name)
    if not value:
        pytest.fail(f"{name} is not set: start the services with `deploy/stack.sh up` (the README's test command does)")
    return value


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kafka_bootstrap() -> str:
    return require("FLYWHEEL_TEST_KAFKA_BOOTSTRAP")


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh 3-partition topic for this test only (and its dead-letter topic)."""
    from kafka.admin import KafkaAdminClient, NewTopic

    name = unique("test-events")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(name, 3, 1), NewTopic(f"{name}.dlq", 1, 1)])
    try:
        yield name
    finally:
        admin.delete_topics([name, f"{name}.dlq"])
        admin.close()


@pytest.fixture
def s3_options() -> dict[str, str]:
    return {
        "endpoint_url": require("FLYWHEEL_TEST_S3_ENDPOINT"),
        "aws_access_key_id": require("FLYWHEEL_TEST_S3_ACCESS_KEY"),
        "aws_secret_access_key": require("FLYWHEEL_TEST_S3_SECRET_KEY"),
        "region_name": "us-east-1",
    }


@pytest.fixture
def s3_url() -> str:
    """A fresh prefix in the test bucket for this test only."""
    return f"s3://{require('FLYWHEEL_TEST_S3_BUCKET')}/{unique('lake')}"
