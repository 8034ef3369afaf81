"""The services started by deploy/stack.sh are real: a Kafka broker and an S3 server that keep what they get.

Settings come from FLYWHEEL_TEST_* environment variables, or else from the stack.env file that
`deploy/stack.sh up` writes (in $FLYWHEEL_RUN_DIR, default <repo>/.run). Missing settings fail the test:
a marked test that silently skips would hide a CI run without its services.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

REPO_DIR = Path(__file__).resolve().parents[2]


def _stack_env_file() -> Path:
    return Path(os.environ.get("FLYWHEEL_RUN_DIR", REPO_DIR / ".run")) / "stack.env"


def _read_stack_env(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.lstrip().startswith("#")}


def setting(name: str) -> str:
    """The value of FLYWHEEL_TEST_<name>, from the environment first, then from stack.env; fails if absent."""
    key = f"FLYWHEEL_TEST_{name}"
    value = os.environ.get(key) or _read_stack_env(_stack_env_file()).get(key)
    if not value:
        pytest.fail(
            f"{key} is not set and {_stack_env_file()} does not define it: "
            "start the services with `deploy/stack.sh up` (or export the FLYWHEEL_TEST_* variables)",
            pytrace=False,
        )
    return value


@pytest.mark.kafka
def test_kafka_round_trip_through_a_fresh_topic() -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    bootstrap = setting("KAFKA_BOOTSTRAP")
    run = uuid.uuid4().hex[:12]
    topic, group = f"test-deploy-{run}", f"test-deploy-{run}"
    key, value = f"interaction-{run}".encode(), f'{{"run": "{run}"}}'.encode()

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        try:
            metadata = producer.send(topic, key=key, value=value).get(timeout=30)
        finally:
            producer.close(timeout=10)
        assert metadata.topic == topic
        assert metadata.offset == 0

        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=1000,
        )
        try:
            received: list[Any] = []
            deadline = time.monotonic() + 30
            while not received and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=1000).values():
                    received.extend(records)
            consumer.commit()
        finally:
            consumer.close()
        assert [(r.key, r.value) for r in received] == [(key, value)]
        assert received[0].partition == metadata.partition

        # The group coordinator kept the commit: the broker is a whole Kafka, not a produce/fetch stub.
        committed = admin.list_group_offsets(group)[group]
        assert committed[TopicPartition(topic, metadata.partition)].offset == 1
    finally:
        admin.delete_topics([topic])
        admin.close()


def _s3_client(*, secret: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=setting("S3_ENDPOINT"),
        aws_access_key_id=setting("S3_ACCESS_KEY"),
        aws_secret_access_key=secret or setting("S3_SECRET_KEY"),
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.mark.s3
def test_s3_put_get_list_under_a_unique_prefix() -> None:
    s3, bucket = _s3_client(), setting("S3_BUCKET")
    prefix = f"test-deploy/{uuid.uuid4().hex}/"
    body = os.urandom(64 * 1024) + b"flywheel"
    key = prefix + "date=2026-01-01/part-0.parquet"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        assert [(o["Key"], o["Size"]) for o in listed.get("Contents", [])] == [(key, len(body))]
    finally:
        s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount") == 0


@pytest.mark.s3
def test_s3_rejects_a_wrong_secret() -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as raised:
        _s3_client(secret="not-the-secret").list_objects_v2(Bucket=setting("S3_BUCKET"))
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
