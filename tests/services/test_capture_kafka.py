"""Capture against the real Apache Kafka broker (and the real S3 server) that deploy/stack.sh started."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from kafka import KafkaConsumer, TopicPartition

from flywheel_feedback.client import Emitter
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.store import LocalStore, S3Store
from flywheel_feedback.services.lake.tables import RAW_EVENTS

from .kafka_helpers import capture_settings, capture_until, event_bytes, lake_count

pytestmark = pytest.mark.kafka


def send(bootstrap: str, topic: str, values: list[tuple[str, bytes]]) -> None:
    with Emitter(bootstrap, topic=topic) as emitter:
        for key, value in values:
            emitter.send_raw(value, key=key.encode())


def committed(bootstrap: str, topic: str, group: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: consumer.committed(tp) for tp in parts}
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def test_emitted_events_land_exactly_once_on_local_disk(kafka_bootstrap: str, kafka_topic: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    values = [event_bytes(i, run=run) for i in range(3000)]
    send(kafka_bootstrap, kafka_topic, values)
    store = LocalStore(tmp_path / "lake")
    settings = capture_settings(kafka_bootstrap, kafka_topic, str(tmp_path / "lake"))
    capture_until(settings, store, lambda: lake_count(store) >= 3000)

    frame = read_events(store)
    assert frame.height == 3000
    assert set(frame.get_column("event_id")) == {json.loads(v)["event_id"] for _, v in values}
    # keyed by interaction_id: all events of an interaction share a partition
    per_interaction = frame.group_by("interaction_id").agg(pl.col("kafka_partition").n_unique().alias("parts"))
    assert per_interaction.get_column("parts").max() == 1
    assert committed(kafka_bootstrap, kafka_topic, settings.group_id) == end_offsets(kafka_bootstrap, kafka_topic)


def test_emitted_events_land_exactly_once_on_s3(
    kafka_bootstrap: str, kafka_topic: str, s3_url: str, s3_options: dict[str, Any]
) -> None:
    run = uuid.uuid4().hex[:6]
    values = [event_bytes(i, run=run) for i in range(1500)]
    send(kafka_bootstrap, kafka_topic, values)
    store = S3Store(s3_url, **s3_options)
    settings = capture_settings(kafka_bootstrap, kafka_topic, s3_url)
    capture_until(settings, store, lambda: lake_count(store) >= 1500)

    frame = read_events(store)
    assert frame.height == 1500
    assert set(frame.get_column("event_id")) == {json.loads(v)["event_id"] for _, v in values}
    # A Delta table on S3: its log names the files, and the table holds each record once.
    assert any(k.startswith(f"{RAW_EVENTS.name}/_delta_log/") for k in store.list(RAW_EVENTS.name))
    assert delta.scan(store, RAW_EVENTS).select("kafka_partition", "kafka_offset").collect().n_unique() == 1500


BAD_INPUTS: dict[str, tuple[bytes, str]] = {
    "bad json": (b'{"event_id": "x", "type": "copy",', "invalid JSON"),
    "not an object": (b"[1, 2, 3]", "not a JSON object"),
    "wrong types": (
        b'{"event_id": "x", "type": "dwell", "ts": "2026-11-27T10:00:00Z", "interaction_id": "i", "dwell_ms": "5"}',
        "int_type at dwell.dwell_ms",
    ),
    "unknown type": (
        b'{"event_id": "x", "type": "like", "ts": "2026-11-27T10:00:00Z", "interaction_id": "i"}',
        "unknown event type 'like'",
    ),
    "missing event id": (
        b'{"type": "copy", "ts": "2026-11-27T10:00:00Z", "interaction_id": "i"}',
        "missing at copy.event_id",
    ),
    "missing interaction id": (
        b'{"event_id": "x", "type": "accept", "ts": "2026-11-27T10:00:00Z"}',
        "missing at accept.interaction_id",
    ),
    "oversized": (
        json.dumps(
            {"event_id": "x", "type": "copy", "ts": "2026-11-27T10:00:00Z", "interaction_id": "i", "pad": "x" * 5000}
        ).encode(),
        "oversized: ",
    ),
    "empty": (b"", "empty message"),
    "binary": (b"\x00\xff\xfe\x01", "invalid JSON"),
}


def test_every_kind_of_bad_input_is_dead_lettered_with_its_reason(
    kafka_bootstrap: str, kafka_topic: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    values: list[tuple[str, bytes]] = []
    for n, (bad, _) in enumerate(BAD_INPUTS.values()):
        values.append(event_bytes(2 * n + 1, run=run))  # valid events around every bad one
        values.append(("same-key", bad))
        values.append(event_bytes(2 * n + 2, run=run))
    send(kafka_bootstrap, kafka_topic, values)
    store = LocalStore(tmp_path / "lake")
    settings = capture_settings(kafka_bootstrap, kafka_topic, str(tmp_path / "lake"), max_event_bytes=4096)
    valid = len(values) - len(BAD_INPUTS)
    capture_until(settings, store, lambda: lake_count(store) >= valid)
    assert lake_count(store) == valid

    consumer = KafkaConsumer(
        f"{kafka_topic}.dlq",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
        group_id=f"{kafka_topic}-dlq-reader",
    )
    dead = {}
    for message in consumer:
        headers = {k: v.decode() for k, v in message.headers}
        dead[message.value] = headers
        if len(dead) == len(BAD_INPUTS):
            break
    consumer.close()
    for name, (bad, reason) in BAD_INPUTS.items():
        assert bad in dead, f"{name} did not reach the dead-letter topic"
        assert reason in dead[bad]["flywheel-dlq-reason"], (name, dead[bad])
        assert dead[bad]["flywheel-source-topic"] == kafka_topic
        assert int(dead[bad]["flywheel-source-offset"]) >= 0
