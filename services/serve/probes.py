"""The dependency probes of `flywheel serve` (run by health.Dependencies on threads of their own).

Kafka: one long-lived admin client (kafka-python's: librdkafka 2.x crashed the process here when listing a
group's offsets while its coordinator was loading) asks for the topic's metadata, its end offsets and the
capture group's committed offsets, each with a short timeout: the same calls answer "is the broker there" and
measure the lag, and no consumer is created per probe. The lake: a HEAD of one key with a client whose connect
and read timeouts are short and that does not retry (boto3's defaults wait minutes). Argilla: GET /api/v1/status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import httpx
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient, OffsetSpec
from kafka.errors import KafkaError

from flywheel_feedback.services.lake.store import ObjectStore, S3Store
from flywheel_feedback.services.serve.health import describe_error
from flywheel_feedback.services.settings import KafkaSettings

log = logging.getLogger(__name__)

PROBE_KEY: Final = "_flywheel/probe"  # never written: a HEAD answering 404 proves the lake reachable


class KafkaProbe:
    """Reachability of the broker and capture's lag, through one admin client (made at the first probe that
    reaches the broker, then kept: it reconnects by itself)."""

    def __init__(self, kafka: KafkaSettings, *, topic: str, group: str, timeout_s: float,
                 on_lag: Callable[[float], None]) -> None:
        self.bootstrap = kafka.bootstrap_servers
        self.topic, self.group, self.timeout_s = topic, group, timeout_s
        self._on_lag = on_lag
        self._options = kafka.kafka_python_options()
        self._admin: KafkaAdminClient | None = None

    def __call__(self) -> None:
        try:
            self._on_lag(self.lag())
        except KafkaError as e:
            self._on_lag(float("nan"))  # unknown, not the last value measured: a stale 0 looked like no lag
            raise ConnectionError(f"Kafka at {self.bootstrap}: {describe_error(e)}") from None

    def _client(self) -> KafkaAdminClient:
        if self._admin is None:
            ms = int(self.timeout_s * 1000)
            self._admin = KafkaAdminClient(**self._options, request_timeout_ms=ms, bootstrap_timeout_ms=ms,
                                           reconnect_backoff_max_ms=1000, client_id="flywheel-serve-health")
        return self._admin

    def lag(self) -> int:
        """Events in the topic that the group has not committed (0 before the topic exists)."""
        admin = self._client()
        described = admin.describe_topics([self.topic])
        topic = next((t for t in described if t.get("name") == self.topic), None)
        if topic is None or topic.get("error_code") or not topic.get("partitions"):
            return 0
        partitions = [TopicPartition(self.topic, p["partition_index"]) for p in topic["partitions"]]
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions},
                                            timeout_ms=int(self.timeout_s * 1000))
        committed = admin.list_group_offsets({self.group: partitions}).get(self.group, {})
        total = 0
        for tp in partitions:
            done = committed.get(tp)
            total += max(ends[tp].offset - (max(done.offset, 0) if done is not None else 0), 0)
        return total


def lake_probe(store: ObjectStore, *, timeout_s: float) -> Callable[[], None]:
    quick = store.with_timeouts(timeout_s) if isinstance(store, S3Store) else store

    def probe() -> None:
        try:
            quick.exists(PROBE_KEY)
        except Exception as e:
            raise ConnectionError(f"the lake at {store.url}: {type(e).__name__}: {e}") from None

    return probe


def argilla_probe(url: str, *, timeout_s: float) -> Callable[[], None]:
    client = httpx.Client(base_url=url, timeout=timeout_s)

    def probe() -> None:
        try:
            answer = client.get("/api/v1/status")
        except httpx.HTTPError as e:
            raise ConnectionError(f"Argilla at {url}: {type(e).__name__}: {e}") from None
        if answer.status_code >= 500:
            raise ConnectionError(f"Argilla at {url}: /api/v1/status answered {answer.status_code}")

    return probe
