"""Kill the capture process with SIGKILL mid-stream, restart it, and count: nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import pytest
from kafka import KafkaProducer

from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.store import LocalStore, ObjectStore
from flywheel_feedback.services.lake.tables import RAW_EVENTS

from .kafka_helpers import event_bytes, lake_count

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = 120_000


def start_capture(
    bootstrap: str, topic: str, lake: Path | str, log: Path, **settings: str
) -> subprocess.Popen[bytes]:
    """`flywheel capture` in its own process; `settings` add to (or override) its environment."""
    env = {
        **os.environ,
        "FLYWHEEL_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "FLYWHEEL_CAPTURE_TOPIC": topic,
        "FLYWHEEL_CAPTURE_DLQ_TOPIC": f"{topic}.dlq",
        "FLYWHEEL_CAPTURE_GROUP_ID": f"{topic}-capture",
        "FLYWHEEL_CAPTURE_BATCH_SIZE": "5000",
        "FLYWHEEL_CAPTURE_FLUSH_INTERVAL_S": "1",
        "FLYWHEEL_LAKE_URL": str(lake),
        **settings,
    }
    out = log.open("ab")
    command = [sys.executable, "-m", "flywheel_feedback.services.cli", "capture"]
    return subprocess.Popen(command, env=env, stdout=out, stderr=out)


def wait_for(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def table_commits(store: ObjectStore) -> int:
    version = delta.table_version(store, RAW_EVENTS)
    return 0 if version is None else version + 1


def stored_records(store: ObjectStore) -> pl.DataFrame:
    """The raw table as stored, without deduplication: every file a commit names reads whole."""
    return delta.scan(store, RAW_EVENTS).select("kafka_partition", "kafka_offset", "event_id").collect()


def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(
    kafka_bootstrap: str, kafka_topic: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20, batch_size=512 * 1024)
    for i in range(EVENTS):
        key, value = event_bytes(i, run=run)
        producer.send(kafka_topic, value=value, key=key.encode())
    producer.flush()
    producer.close()

    lake = tmp_path / "lake"
    store = LocalStore(lake)
    log = tmp_path / "capture.log"
    first = start_capture(kafka_bootstrap, kafka_topic, lake, log)
    try:
        # kill it once some, but not all, batches are durable
        wait_for(lambda: table_commits(store) >= 3, 90, "capture wrote nothing")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    landed_before_restart = lake_count(store)
    assert 0 < landed_before_restart < EVENTS, "the crash has to happen mid-stream"
    stored_records(store)

    second = start_capture(kafka_bootstrap, kafka_topic, lake, log)
    try:
        wait_for(lambda: lake_count(store) >= EVENTS, 180, f"only {lake_count(store)} of {EVENTS} events landed")
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()

    # The table itself holds each Kafka record once (not only after deduplication): the replay was skipped.
    stored = stored_records(store)
    assert stored.height == EVENTS
    assert stored.select("kafka_partition", "kafka_offset").n_unique() == EVENTS
    frame = read_events(store)
    assert frame.height == EVENTS
    assert set(frame.get_column("event_id")) == {f"{run}-e{i}" for i in range(EVENTS)}
