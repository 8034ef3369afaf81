"""`deploy/stack.sh restart NAME` keeps a service's data and ports, and stack.env configures the CLI too.

Runs a stack of its own (Kafka and S3Proxy, in a temporary FLYWHEEL_RUN_DIR), so restarting it never disturbs
the stack the other tests use."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parents[2]


def stack(run_dir: Path, *args: str) -> None:
    env = {**os.environ, "FLYWHEEL_RUN_DIR": str(run_dir), "FLYWHEEL_WITH_ARGILLA": "0"}
    subprocess.run([str(REPO / "deploy" / "stack.sh"), *args], env=env, check=True, timeout=300)


def read_env(run_dir: Path) -> dict[str, str]:
    lines = (run_dir / "stack.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Path]:
    run_dir = tmp_path / "run"
    stack(run_dir, "up")
    try:
        yield run_dir
    finally:
        stack(run_dir, "down")


@pytest.mark.slow
def test_a_restart_keeps_data_and_ports_and_stack_env_configures_the_cli(own_stack: Path) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    env = read_env(own_stack)
    bootstrap = env["FLYWHEEL_TEST_KAFKA_BOOTSTRAP"]
    # the CLI's own names, derived from the test ones
    assert env["FLYWHEEL_KAFKA_BOOTSTRAP_SERVERS"] == bootstrap
    assert env["FLYWHEEL_LAKE_S3_ENDPOINT_URL"] == env["FLYWHEEL_TEST_S3_ENDPOINT"]
    assert env["AWS_ACCESS_KEY_ID"] == env["FLYWHEEL_TEST_S3_ACCESS_KEY"] and env["AWS_SECRET_ACCESS_KEY"]
    s3 = boto3.client("s3", endpoint_url=env["FLYWHEEL_LAKE_S3_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    bucket = env["FLYWHEEL_TEST_S3_BUCKET"]
    s3.put_object(Bucket=bucket, Key="kept/object", Body=b"still here")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send("kept-topic", b"still here").get(timeout=30)
    producer.close()

    stack(own_stack, "restart", "kafka")
    stack(own_stack, "restart", "s3")

    assert read_env(own_stack) == env  # same ports, same keys
    assert s3.get_object(Bucket=bucket, Key="kept/object")["Body"].read() == b"still here"
    consumer = KafkaConsumer("kept-topic", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=20_000)
    try:
        assert [m.value for m in consumer][:1] == [b"still here"]
    finally:
        consumer.close()
