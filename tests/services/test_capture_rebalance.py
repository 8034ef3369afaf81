"""Two `flywheel capture` processes of one consumer group, a lake on S3: one joins while the other runs (a
rebalance moves partitions between them mid-flush), then one is killed with SIGKILL mid-stream and the other takes
over its partitions. The raw table holds every event exactly once, as stored, not only after deduplication."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.store import ObjectStore, S3Store
from flywheel_feedback.services.lake.tables import RAW_EVENTS
from tests.conftest import unique

from .kafka_helpers import event_bytes
from .test_capture_crash import start_capture, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.s3, pytest.mark.slow]

EVENTS = 30_000
PARTITIONS = 6
SEND_SECONDS = 30.0


@pytest.fixture
def topic(kafka_bootstrap: str) -> Iterator[str]:
    name = unique("test-rebalance")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(name, PARTITIONS, 1), NewTopic(f"{name}.dlq", 1, 1)])
    try:
        yield name
    finally:
        admin.delete_topics([name, f"{name}.dlq"])
        admin.close()


def send(bootstrap: str, topic: str, run: str, crashed: threading.Event) -> None:
    """EVENTS events over about SEND_SECONDS, keyed by interaction (so spread over every partition); the last
    fifth only once the first process has been killed, so events keep coming while the survivor takes over
    (however slow the machine is)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    started, chunk = time.monotonic(), EVENTS // 30
    for i in range(EVENTS):
        if i == EVENTS * 4 // 5:
            producer.flush()
            crashed.wait(120)
            started = time.monotonic() - SEND_SECONDS * 4 / 5
        key, value = event_bytes(i, run=run)
        producer.send(topic, value=value, key=key.encode())
        if i % chunk == chunk - 1:
            time.sleep(max(0.0, started + SEND_SECONDS * (i + 1) / EVENTS - time.monotonic()))
    producer.flush()
    producer.close()


def stored_count(store: ObjectStore) -> int:
    """Rows the table's files hold, duplicates included (from the commits' statistics, without reading data)."""
    table = delta.open_table(store, RAW_EVENTS)
    if table is None:
        return 0
    files = pl.DataFrame(table.get_add_actions(flatten=True))
    return int(files.get_column("num_records").sum()) if files.height else 0


def flushes(log: Path) -> int:
    return log.read_text(errors="replace").count("committed ") if log.exists() else 0


def test_two_processes_one_killed_mid_stream_store_each_event_once(
    kafka_bootstrap: str, topic: str, s3_url: str, s3_options: dict[str, Any], tmp_path: Path
) -> None:
    store = S3Store(s3_url, **s3_options)
    s3_env = {
        "FLYWHEEL_LAKE_S3_ENDPOINT_URL": s3_options["endpoint_url"],
        "AWS_ACCESS_KEY_ID": s3_options["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": s3_options["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": s3_options["region_name"],
        # small, frequent flushes: many commits, so partitions move while flushes are in flight
        "FLYWHEEL_CAPTURE_BATCH_SIZE": "500",
        "FLYWHEEL_CAPTURE_FLUSH_INTERVAL_S": "0.5",
    }
    run = uuid.uuid4().hex[:6]
    crashed = threading.Event()
    producer = threading.Thread(target=send, args=(kafka_bootstrap, topic, run, crashed), name="producer")
    logs = [tmp_path / "capture-a.log", tmp_path / "capture-b.log"]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        producer.start()
        processes.append(start_capture(kafka_bootstrap, topic, s3_url, logs[0], **s3_env))
        wait_for(lambda: flushes(logs[0]) >= 2, 40, "the first capture process committed nothing")
        processes.append(start_capture(kafka_bootstrap, topic, s3_url, logs[1], **s3_env))
        # the group rebalances: both processes commit, then the first dies mid-stream
        wait_for(lambda: flushes(logs[1]) >= 2, 40, "the second capture process committed nothing")
        processes[0].send_signal(signal.SIGKILL)
        assert processes[0].wait(10) == -signal.SIGKILL
        landed_at_crash = stored_count(store)
        crashed.set()
        assert 0 < landed_at_crash < EVENTS

        producer.join(60)
        # the survivor takes the dead one's partitions once its session times out (10 s)
        wait_for(lambda: stored_count(store) >= EVENTS, 60, f"only {stored_count(store)} of {EVENTS} events landed")
        processes[1].send_signal(signal.SIGTERM)
        assert processes[1].wait(30) == 0, logs[1].read_text()[-3000:]
    finally:
        crashed.set()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        producer.join(5)

    position = ["kafka_topic", "kafka_partition", "kafka_offset"]
    stored = delta.scan(store, RAW_EVENTS).select(*position, "event_id").collect()
    assert stored.height == EVENTS
    assert stored.select(position).n_unique() == EVENTS
    assert stored.get_column("event_id").n_unique() == EVENTS
    assert set(stored.get_column("event_id")) == {f"{run}-e{i}" for i in range(EVENTS)}
    assert stored.get_column("kafka_partition").n_unique() == PARTITIONS
