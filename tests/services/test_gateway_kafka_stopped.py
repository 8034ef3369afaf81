"""Kafka stopped mid-load: clients keep posting to the gateway, which answers 503 with Retry-After while its
broker is down; the clients retry what was not accepted, and once the broker is back every event is on the
topic exactly once (by event_id) and, through capture, in the lake exactly once.

The broker is this test's own (deploy/kafka.sh in a temporary run directory, stopped and resumed by its PID):
the shared one is never stopped."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.lake.tables import RAW_EVENTS

from .gateway_helpers import SERVER_KEY, auth, consume, dumps, feedback, gateway_settings, interaction, running_gateway
from .kafka_helpers import capture_settings, capture_until, lake_count
from .own_kafka import OwnKafka

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLIENTS = 4
EVENTS_PER_CLIENT = 600
BATCH = 10


class Load:
    """What the clients saw: accepted event ids, 503s (with their Retry-After), anything unexpected."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: Counter[str] = Counter()
        self.busy = 0
        self.retry_after: set[str] = set()
        self.errors: list[str] = []


def events_for(client: int, run: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for n in range(EVENTS_PER_CLIENT // 2):
        iid = f"{run}-c{client}-i{n}"
        events += [interaction(iid, event_id=f"{iid}-e0"), feedback(iid, "dwell", event_id=f"{iid}-e1", dwell_ms=n)]
    return events


def post_until_accepted(url: str, events: list[dict[str, Any]], load: Load, deadline: float) -> None:
    pending = list(events)
    with httpx.Client(base_url=url, timeout=30) as http:  # one keep-alive connection per client
        while pending and time.monotonic() < deadline:
            batch = pending[:BATCH]
            try:
                answer = http.post("/v1/events", content=dumps(batch), headers=auth(SERVER_KEY))
            except httpx.TransportError as e:
                load.errors.append(f"transport: {e}")
                time.sleep(0.5)
                continue
            body = answer.json()
            if answer.status_code == 503:
                with load.lock:
                    load.busy += 1
                    load.retry_after.add(answer.headers.get("retry-after", ""))
            elif answer.status_code != 200:
                load.errors.append(f"{answer.status_code}: {answer.text[:200]}")
                return
            done = {r["event_id"] for r in body.get("results", ()) if r["status"] == "accepted"}
            if any(r["status"] == "rejected" for r in body.get("results", ())):
                load.errors.append(f"rejected: {body}")
                return
            with load.lock:
                load.accepted.update(done)
            pending = [e for e in pending if e["event_id"] not in done]
            time.sleep(min(float(answer.headers.get("retry-after", 0)), 1.0) if answer.status_code == 503 else 0.05)


def test_kafka_stopped_mid_load_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    broker = OwnKafka(tmp_path / "run").start()
    try:
        topic = f"gw-stop-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(topic, 3, 1), NewTopic(f"{topic}.dlq", 1, 1)])
        admin.close()
        run = uuid.uuid4().hex[:6]
        load = Load()
        everything = [events_for(c, run) for c in range(CLIENTS)]
        settings = gateway_settings(broker.bootstrap, topic, ack_timeout_s=2.0, stall_s=0.5, retry_after_s=1)
        with running_gateway(settings) as url:
            deadline = time.monotonic() + 150
            clients = [threading.Thread(target=post_until_accepted, args=(url, events, load, deadline))
                       for events in everything]
            for c in clients:
                c.start()
            while sum(load.accepted.values()) < CLIENTS * EVENTS_PER_CLIENT // 4:
                assert time.monotonic() < deadline and not load.errors, load.errors
                time.sleep(0.05)
            accepted_before = sum(load.accepted.values())
            broker.stop()  # mid-load
            stopped_at = time.monotonic()
            while load.busy < CLIENTS and time.monotonic() - stopped_at < 30:
                time.sleep(0.1)
            busy_while_down = load.busy
            accepted_while_down = sum(load.accepted.values()) - accepted_before
            time.sleep(2)
            broker.resume()
            for c in clients:
                c.join(max(deadline - time.monotonic(), 1))
            assert not any(c.is_alive() for c in clients), "the clients did not get every event accepted"

        total = CLIENTS * EVENTS_PER_CLIENT
        assert not load.errors, load.errors[:5]
        assert busy_while_down >= CLIENTS, "the gateway did not answer 503 while Kafka was down"
        assert load.retry_after == {"1"}
        print(f"\naccepted {accepted_before} before the stop, {accepted_while_down} while stopping, "
              f"{load.busy} answers 503, {total} accepted in the end")
        ids = {e["event_id"] for events in everything for e in events}
        assert set(load.accepted) == ids and all(n == 1 for n in load.accepted.values())

        on_topic = Counter(json.loads(m.value)["event_id"]
                           for m in consume(broker.bootstrap, topic, expect=total, timeout_s=60))
        assert set(on_topic) == ids, f"{len(ids - set(on_topic))} accepted events are missing"
        assert max(on_topic.values()) == 1, f"produced twice: {[i for i, n in on_topic.items() if n > 1][:5]}"

        # and through capture into a lake: every accepted event once
        lake = tmp_path / "lake"
        store = LocalStore(lake)
        capture_until(capture_settings(broker.bootstrap, topic, str(lake)), store,
                      lambda: lake_count(store) >= total, timeout_s=120)
        assert set(read_events(store, columns=["event_id"]).get_column("event_id")) == ids
        assert delta.scan(store, RAW_EVENTS).select(pl.len()).collect().item() == total  # no duplicate row at all
    finally:
        broker.stop()
