"""`flywheel serve` through outages of its dependencies: /readyz goes false within 10 s of Kafka (or the lake)
becoming unreachable, naming it, and true again within 10 s of its recovery; the events produced around the
outage all land in the lake, once each.

The broker and the S3 server that are stopped are this test's own (deploy/kafka.sh and deploy/s3.sh in a
temporary run directory, stopped and restarted by the PIDs in their pidfiles, on the same ports and data): the
shared ones are never stopped. "Unreachable" starts when the port refuses connections, "recovered" when the
deploy script says the server answers again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.store import LocalStore, ObjectStore, S3Store
from tests.conftest import REPO, free_port, unique

from .kafka_helpers import event_bytes
from .own_kafka import OwnKafka
from .serve_helpers import probe, refuses, start_serve, stop_serve, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

BOUND_S = 10.0  # the bound, both ways


def serve_env(bootstrap: str, topic: str, port: int) -> dict[str, str]:
    return {
        "FLYWHEEL_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "FLYWHEEL_CAPTURE_TOPIC": topic,
        "FLYWHEEL_CAPTURE_DLQ_TOPIC": f"{topic}.dlq",
        "FLYWHEEL_CAPTURE_GROUP_ID": f"{topic}-serve",
        "FLYWHEEL_CAPTURE_FLUSH_INTERVAL_S": "0.5",
        "FLYWHEEL_SERVE_PORT": str(port),
        "FLYWHEEL_SERVE_LABEL_INTERVAL_S": "3600",  # the labeler is not what this test is about
        "FLYWHEEL_SLICES_DEFINITIONS_DIR": "/nonexistent",
    }


def produce(producer: KafkaProducer, topic: str, run: str, numbers: range) -> list[str]:
    ids = []
    for i in numbers:
        key, value = event_bytes(i, run=run)
        producer.send(topic, value, key=key.encode())
        ids.append(f"{run}-e{i}")
    return ids


def landed_once(store: ObjectStore, ids: list[str]) -> bool:
    counts = Counter(read_events(store).get_column("event_id").to_list())
    missing = [i for i in ids if counts[i] == 0]
    doubled = [i for i, n in counts.items() if n > 1]
    assert not doubled, f"in the lake more than once: {doubled[:5]}"
    return not missing


def ready(port: int) -> bool:
    return probe(port, "/readyz")[0] == 200


def not_ready_naming(port: int, word: str) -> bool:
    status, body = probe(port, "/readyz")
    return status == 503 and any(word in reason for reason in body.get("reasons", ()))


def stopping(stop: Callable[[], None], address: str, port: int, word: str, log: Path) -> float:
    """Stop a server on a thread; returns how long after its port refused connections /readyz said so."""
    stopper = threading.Thread(target=stop)
    stopper.start()
    unreachable = wait_for("the port refusing connections", lambda: refuses(address), 60, log, every_s=0.05)
    flipped = wait_for(f"/readyz false naming {word}", lambda: not_ready_naming(port, word), 30, log)
    stopper.join(60)
    return flipped - unreachable


def recovering(restart: Callable[[], None], port: int, log: Path) -> float:
    """Bring the dependency back; the seconds /readyz took to say so."""
    restart()
    back = time.monotonic()
    return wait_for("/readyz true again", lambda: ready(port), 60, log) - back


def stop_and_check_exactly_once(process: subprocess.Popen[bytes], store: ObjectStore, ids: list[str],
                                log: Path) -> None:
    """SIGTERM ends serve cleanly, every event produced is in the lake once, and its last line says so."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, log.read_text()[-4000:]
    assert landed_once(store, ids) and read_events(store).height == len(ids)
    assert "stopped in" in log.read_text() and f"{len(ids)} events written to the lake this run" in log.read_text()


def test_kafka_stopped_and_back_under_serve(tmp_path: Path) -> None:
    kafka = OwnKafka(tmp_path / "run").start()
    topic, port, run = unique("outage"), free_port(), unique("k")
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1), NewTopic(f"{topic}.dlq", 1, 1)])
    admin.close()
    store = LocalStore(tmp_path / "lake")
    log = tmp_path / "serve.log"
    process = start_serve({**serve_env(kafka.bootstrap, topic, port), "FLYWHEEL_LAKE_URL": str(store.root)}, log)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", retries=1_000_000,
                             delivery_timeout_ms=300_000, max_block_ms=120_000, reconnect_backoff_max_ms=500)
    try:
        wait_for("serve ready", lambda: ready(port), 90, log)
        ids = produce(producer, topic, run, range(0, 300))
        producer.flush(60)
        wait_for("the first events in the lake", lambda: landed_once(store, ids), 60, log)

        late = stopping(kafka.stop, kafka.bootstrap, port, "Kafka", log)
        assert late <= BOUND_S, f"/readyz said Kafka was gone {late:.1f}s after it was"
        assert probe(port, "/livez")[0] == 200  # the process itself is fine: no restart wanted
        ids += produce(producer, topic, run, range(300, 600))  # held by the producer until the broker is back

        recovered = recovering(kafka.resume, port, log)
        assert recovered <= BOUND_S, f"/readyz said Kafka was back {recovered:.1f}s after it was"
        print(f"Kafka: not ready {late:.1f}s after its port closed, ready {recovered:.1f}s after it was back")
        ids += produce(producer, topic, run, range(600, 900))
        producer.flush(120)
        wait_for("every event in the lake", lambda: landed_once(store, ids), 90, log, every_s=1)

        stop_and_check_exactly_once(process, store, ids, log)
    finally:
        producer.close(5)
        stop_serve(process)
        kafka.stop()


class OwnS3:
    """deploy/s3.sh with this test's run directory: its own port, keys and data."""

    def __init__(self, run_dir: Path) -> None:
        self.env = {**os.environ, "FLYWHEEL_RUN_DIR": str(run_dir), "FLYWHEEL_PYTHON": sys.executable}
        self.run_dir = run_dir

    def _run(self, command: str) -> None:
        done = subprocess.run(["nice", "-n", "10", "bash", str(REPO / "deploy" / "s3.sh"), command], env=self.env,
                              capture_output=True, text=True, timeout=180, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"deploy/s3.sh {command} failed:\n{done.stderr[-3000:]}")

    def settings(self) -> dict[str, str]:
        lines = (self.run_dir / "s3" / "env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def start(self) -> OwnS3:
        self._run("start")
        return self

    def stop(self) -> None:
        self._run("stop")

    def restart(self) -> None:  # the same port, keys and data
        self._run("restart")


@pytest.mark.s3
def test_lake_unreachable_and_back_under_serve(tmp_path: Path, kafka_bootstrap: str, kafka_topic: str) -> None:
    s3 = OwnS3(tmp_path / "run").start()
    conf = s3.settings()
    endpoint = conf["FLYWHEEL_TEST_S3_ENDPOINT"]
    url = f"s3://{conf['FLYWHEEL_TEST_S3_BUCKET']}/lake"
    credentials = {"AWS_ACCESS_KEY_ID": conf["FLYWHEEL_TEST_S3_ACCESS_KEY"],
                   "AWS_SECRET_ACCESS_KEY": conf["FLYWHEEL_TEST_S3_SECRET_KEY"], "AWS_DEFAULT_REGION": "us-east-1"}
    store = S3Store(url, endpoint_url=endpoint, region_name="us-east-1",
                    aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"])
    port, run = free_port(), unique("s")
    log = tmp_path / "serve.log"
    env = {**serve_env(kafka_bootstrap, kafka_topic, port), **credentials, "FLYWHEEL_LAKE_URL": url,
           "FLYWHEEL_LAKE_S3_ENDPOINT_URL": endpoint}
    process = start_serve(env, log)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        wait_for("serve ready", lambda: ready(port), 90, log)
        ids = produce(producer, kafka_topic, run, range(0, 300))
        producer.flush(60)
        wait_for("the first events in the lake", lambda: landed_once(store, ids), 60, log)

        address = endpoint.removeprefix("http://")
        late = stopping(s3.stop, address, port, "lake", log)
        assert late <= BOUND_S, f"/readyz said the lake was gone {late:.1f}s after it was"
        ids += produce(producer, kafka_topic, run, range(300, 600))  # capture holds them, retrying its writes
        producer.flush(60)

        recovered = recovering(s3.restart, port, log)
        assert recovered <= BOUND_S, f"/readyz said the lake was back {recovered:.1f}s after it was"
        print(f"lake: not ready {late:.1f}s after its port closed, ready {recovered:.1f}s after it was back")
        ids += produce(producer, kafka_topic, run, range(600, 900))
        producer.flush(60)
        wait_for("every event in the lake", lambda: landed_once(store, ids), 90, log, every_s=1)

        stop_and_check_exactly_once(process, store, ids, log)
    finally:
        producer.close(5)
        stop_serve(process)
        s3.stop()


@pytest.mark.s3
def test_sigterm_while_the_lake_is_unreachable_exits_within_the_grace_period_and_loses_nothing(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
) -> None:
    """Capture cannot flush what it holds: the process gives up at the end of its grace period (saying so) and
    the next run, once the lake is back, writes those events from Kafka, once each."""
    s3 = OwnS3(tmp_path / "run").start()
    conf = s3.settings()
    endpoint, url = conf["FLYWHEEL_TEST_S3_ENDPOINT"], f"s3://{conf['FLYWHEEL_TEST_S3_BUCKET']}/lake"
    credentials = {"AWS_ACCESS_KEY_ID": conf["FLYWHEEL_TEST_S3_ACCESS_KEY"],
                   "AWS_SECRET_ACCESS_KEY": conf["FLYWHEEL_TEST_S3_SECRET_KEY"], "AWS_DEFAULT_REGION": "us-east-1"}
    store = S3Store(url, endpoint_url=endpoint, region_name="us-east-1",
                    aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"])
    port, run, grace = free_port(), unique("g"), 4.0
    env = {**serve_env(kafka_bootstrap, kafka_topic, port), **credentials, "FLYWHEEL_LAKE_URL": url,
           "FLYWHEEL_LAKE_S3_ENDPOINT_URL": endpoint, "FLYWHEEL_SERVE_GRACE_S": str(grace)}
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    process = start_serve(env, first)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        wait_for("serve ready", lambda: ready(port), 90, first)
        ids = produce(producer, kafka_topic, run, range(0, 300))
        producer.flush(60)
        wait_for("the first events in the lake", lambda: landed_once(store, ids), 60, first)
        s3.stop()
        ids += produce(producer, kafka_topic, run, range(300, 600))
        producer.flush(60)
        wait_for("capture retrying its write", lambda: "failed (attempt 1), retrying" in first.read_text(), 60, first)

        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert process.wait(30) == 0, first.read_text()[-4000:]
        took = time.monotonic() - signalled
        print(f"SIGTERM with the lake unreachable: exited in {took:.1f}s (grace {grace:.0f}s)")
        assert took <= grace, f"exited {took:.1f}s after SIGTERM\n{first.read_text()[-4000:]}"
        assert "abandoned: capture flush" in first.read_text().strip().splitlines()[-1]

        s3.restart()
        process = start_serve(env, second)
        wait_for("every event in the lake", lambda: landed_once(store, ids), 120, second, every_s=1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, second.read_text()[-4000:]
        assert read_events(store).height == len(ids)
    finally:
        producer.close(5)
        stop_serve(process)
        s3.stop()
