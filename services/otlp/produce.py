"""Sending converted events to Kafka: the small interface the OTLP route produces through, and a Kafka producer.

The OTLP route makes a `KafkaEventProducer` on its first request (idempotent, acks=all, answering only once the
broker has acknowledged every message) and the gateway closes it when it stops. A test may hand `otlp_routes`
another producer (anything with `send`); its owner closes that one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from flywheel_feedback.services.settings import KafkaSettings


class ProduceError(Exception):
    """Kafka did not take the messages (unreachable, slow, or its queue is full): the caller may retry."""


class EventProducer(Protocol):
    async def send(self, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce (key, value) pairs; return once Kafka has acknowledged all of them, else raise ProduceError."""
        ...


class KafkaEventProducer:
    """An idempotent confluent-kafka producer (acks=all) whose deliveries resolve asyncio futures."""

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float = 30.0, **config: Any) -> None:
        self._producer = Producer({
            **kafka.confluent_config(),
            "bootstrap.servers": kafka.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(timeout_s * 1000),
            **config,
        })
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="otlp-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.1)

    async def send(self, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> None:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []

        def delivered(future: asyncio.Future[None]) -> Any:
            def report(error: KafkaError | None, message: Message) -> None:
                loop.call_soon_threadsafe(_settle, future, error)
            return report

        refused: Exception | None = None
        for key, value in messages:
            future = loop.create_future()
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=delivered(future))
            except (BufferError, KafkaException) as e:
                refused = e
                break
            futures.append(future)
        # wait for what was produced, even when the rest was refused, so no callback outlives its future
        results = await asyncio.gather(*futures, return_exceptions=True)
        if refused is not None:
            raise ProduceError(f"Kafka's producer queue did not take the events: {refused}")
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise ProduceError(f"{len(failed)} of {len(futures)} events not acknowledged by Kafka: {failed[0]}")

    @property
    def closed(self) -> bool:
        return not self._poller.is_alive()

    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what is queued, then stop (once; a second call does nothing)."""
        if self._stopping.is_set():
            return
        self._producer.flush(timeout_s)
        self._stopping.set()
        self._poller.join()


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(ProduceError(error.str()))
