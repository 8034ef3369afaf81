"""The Kafka emitter product apps use to send events. Needs only pydantic and kafka-python.

    emitter = Emitter("broker:9092")
    emitter.emit(Interaction(event_id=new_event_id(), ts=now(), interaction_id=..., ...))
    emitter.flush()

Thread-safe (one KafkaProducer shared by all threads), batching (linger), keyed by
interaction_id so every event of an interaction lands in one partition, in order. close()
flushes, and is registered to run at interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from flywheel_feedback.schemas.events import EventBase

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "flywheel.events"


class EmitterError(RuntimeError):
    """Events could not be delivered; the message says which broker and why."""


class Emitter:
    def __init__(
        self,
        bootstrap_servers: str | list[str],
        *,
        topic: str = DEFAULT_TOPIC,
        linger_ms: int = 20,
        batch_size: int = 256 * 1024,
        connect_timeout_s: float = 10.0,
        **producer_options: Any,
    ) -> None:
        self.topic = topic
        self._servers = bootstrap_servers
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self._closed = False
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap_servers,
                acks="all",
                linger_ms=linger_ms,
                batch_size=batch_size,
                compression_type=None,
                max_block_ms=int(connect_timeout_s * 1000),
                bootstrap_timeout_ms=int(connect_timeout_s * 1000),
                **producer_options,
            )
        except KafkaTimeoutError as e:
            raise EmitterError(f"cannot reach Kafka at {bootstrap_servers}: no broker answered") from e
        except KafkaError as e:
            raise EmitterError(f"cannot connect to Kafka at {bootstrap_servers}: {e}") from e
        atexit.register(self.close)

    def emit(self, event: EventBase) -> None:
        """Queue one event for sending (validated by its model already)."""
        key = getattr(event, "interaction_id", None) or event.event_id
        self.send_raw(event.model_dump_json(exclude_none=True).encode(), key=key.encode())

    def emit_many(self, events: Iterable[EventBase]) -> None:
        for event in events:
            self.emit(event)

    def send_raw(self, value: bytes, *, key: bytes | None) -> None:
        """Send already-encoded bytes (the simulator and tests use it to send bad input, too)."""
        if self._closed:
            raise EmitterError("the emitter is closed")
        try:
            future = self._producer.send(self.topic, value=value, key=key)
        except KafkaError as e:
            raise EmitterError(f"cannot send to {self.topic} at {self._servers}: {e}") from e
        future.add_errback(self._failed)

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            self._failures.append(f"{type(error).__name__}: {error}")

    def flush(self, timeout_s: float | None = 30.0) -> None:
        """Block until every queued event is acknowledged by the broker, or raise."""
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as e:
            raise EmitterError(f"flushing to {self.topic} at {self._servers} failed: {e}") from e
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise EmitterError(
                f"{len(failures)} events were not delivered to {self.topic} at {self._servers}; first: {failures[0]}"
            )

    def close(self, timeout_s: float = 30.0) -> None:
        if self._closed:
            return
        try:
            self.flush(timeout_s)
        finally:
            self._closed = True
            self._producer.close(timeout=timeout_s)
            atexit.unregister(self.close)

    def __enter__(self) -> Emitter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
