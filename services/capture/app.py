"""The capture process: a FastStream consumer group from Kafka into the lake.

The handler stays thin: it hands the polled records to the batcher, which validates them,
dead-letters the invalid ones (original bytes, reason in the headers) and writes the valid
ones as Parquet before committing their offsets. The confluent back end was chosen by
measurement (bench/capture.py). With `otlp_topic` set, the same
consumer also reads OpenTelemetry trace exports from that topic (as a Collector's Kafka exporter writes
them), whose LLM spans land as interactions through the same batches and commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from faststream import AckPolicy, FastStream
from faststream.confluent import KafkaBroker, KafkaMessage

from flywheel_feedback.services.capture.batcher import CaptureBatcher, FlushStats, Rejected, TopicPartition
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.settings import CaptureSettings

log = logging.getLogger(__name__)

DLQ_REASON_HEADER = "flywheel-dlq-reason"

# librdkafka prefetches up to 64 MB per partition by default, and waits a second before
# fetching again once that is full. Capture keeps a few polls ahead and no more: its memory
# is the batches it builds, not a read-ahead that grows with the number of partitions.
CONSUMER_PREFETCH = {"queued.max.messages.kbytes": 8 * 1024, "fetch.queue.backoff.ms": 20}


class _ConsumerSettingsNotice(logging.Filter):
    """FastStream gives the broker's librdkafka settings to its producer and admin client too,
    which warn (CONFWARN) that a consumer setting means nothing to them; these are not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("CONFWARN" in message and any(key in message for key in CONSUMER_PREFETCH))


_kafka_log = logging.getLogger(f"{__name__}.kafka")
_kafka_log.addFilter(_ConsumerSettingsNotice())


def dead_letter_headers(item: Rejected) -> dict[str, str]:
    return {
        DLQ_REASON_HEADER: item.reason,
        "flywheel-source-topic": item.topic,
        "flywheel-source-partition": str(item.partition),
        "flywheel-source-offset": str(item.offset),
    }


class CaptureObserver(Protocol):
    """Told of each flush, of events dead-lettered and of spans dropped from OTLP messages (serve's metrics;
    services/serve/metrics.py)."""

    def flushed(self, stats: FlushStats) -> None: ...

    def dead_lettered(self, events: int) -> None: ...

    def otlp_dropped(self, reasons: Mapping[str, int]) -> None: ...


class CaptureService:
    """Owns the broker, the subscriber and the batcher of one capture process."""

    def __init__(self, settings: CaptureSettings, store: ObjectStore, observer: CaptureObserver | None = None) -> None:
        self.settings = settings
        self.store = store
        self._observer = observer
        config = {**CONSUMER_PREFETCH, **settings.kafka.confluent_config()}
        self.broker = KafkaBroker(settings.kafka.bootstrap_servers, config=config, logger=_kafka_log)  # type: ignore[arg-type]
        self._consumer: Consumer | None = None
        self.batcher = CaptureBatcher(
            store,
            writer=f"capture/{settings.group_id}",
            commit=self._commit,
            dead_letter=self._dead_letter,
            batch_size=settings.batch_size,
            flush_interval_s=settings.flush_interval_s,
            max_event_bytes=settings.max_event_bytes,
            compression_level=settings.compression_level,
            on_flush=self._flushed,
            otlp_topics=[settings.otlp_topic] if settings.otlp_topic else [],
            max_otlp_bytes=settings.otlp_max_message_bytes,
            on_otlp_dropped=None if observer is None else observer.otlp_dropped,
        )
        topics = [settings.topic, *([settings.otlp_topic] if settings.otlp_topic else [])]
        self._subscriber = self.broker.subscriber(
            *topics,
            group_id=settings.group_id,
            batch=True,
            max_records=settings.poll_records,
            polling_interval=0.2,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            on_revoke=self._on_revoke,
            parser=self._lean_batch,
            decoder=self._no_decoding,
        )
        self._subscriber(self._on_batch)

    # FastStream's default batch parser and decoder build a message object, parse headers and
    # json-decode the body of every record: 70% of capture's time in a profile. Capture reads
    # the raw records itself, so the batch is wrapped once and nothing is decoded.
    def _lean_batch(self, records: tuple[Any, ...]) -> KafkaMessage:
        first = records[0]
        return KafkaMessage(
            body=b"",
            headers={},
            raw_message=records,
            message_id=f"{first.topic()}-{first.partition()}-{first.offset()}+{len(records)}",
            correlation_id=f"{first.topic()}-{first.partition()}-{first.offset()}",
            consumer=self._subscriber.consumer,  # type: ignore[arg-type]
            is_manual=True,
        )

    @staticmethod
    def _no_decoding(msg: KafkaMessage) -> None:
        return None

    async def _on_batch(self, msg: KafkaMessage) -> None:
        if self._consumer is None:
            self._consumer = msg.consumer.consumer  # type: ignore[attr-defined]
        records: Sequence[Any] = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
        await self.batcher.add(records)

    def _on_revoke(self, consumer: Consumer, partitions: list[ConfluentTopicPartition]) -> None:
        self.batcher.drop([(tp.topic, tp.partition) for tp in partitions])

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self._consumer is None:
            return
        self._consumer.commit(
            offsets=[ConfluentTopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
        )

    async def _dead_letter(self, items: Sequence[Rejected]) -> None:
        await asyncio.gather(
            *(
                self.broker.publish(
                    item.value or b"", topic=self.settings.dlq_topic, key=item.key, headers=dead_letter_headers(item)
                )
                for item in items
            )
        )
        for item in items:
            log.info("dead-lettered %s[%d]@%d: %s", item.topic, item.partition, item.offset, item.reason)
        if self._observer is not None:
            self._observer.dead_lettered(len(items))

    def _flushed(self, stats: FlushStats) -> None:
        if self._observer is not None:
            self._observer.flushed(stats)
        log.info("committed %d events of %d partitions in %.2fs", stats.events, stats.partitions, stats.seconds)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CaptureService]:
        """Start consuming; on exit flush what is buffered, commit it and stop."""
        await self.broker.start()
        ticker = asyncio.create_task(self._tick())
        try:
            with collector_tuned_for_polls(self.settings.poll_records):
                yield self
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            # Flush and commit while the consumer is still open; batches polled after
            # this are not committed, so they are read again on the next start.
            await self.batcher.close()
            await self.broker.stop()

    async def _tick(self) -> None:
        interval = min(1.0, self.settings.flush_interval_s / 2)
        while True:
            await asyncio.sleep(interval)
            await self.batcher.flush_due()


@contextlib.contextmanager
def collector_tuned_for_polls(poll_records: int) -> Iterator[None]:
    """Tune the garbage collector for a process that polls thousands of messages at a time.

    Every poll makes `poll_records` message objects that the collector tracks and that live
    until the poll is processed. With the default threshold (700 new objects) the collector
    ran several times per poll, promoting each message through its generations, and every
    full collection walked the whole process (some 70k objects from start-up, tens of
    milliseconds each time) to find nothing. Start-up objects are frozen out of collection,
    and the young generation holds a few polls, so a poll's messages die before being walked.
    The process's settings come back when the last service in it stops.
    """
    global _tuned_thresholds, _tuned_services
    if _tuned_services == 0:
        _tuned_thresholds = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(max(_tuned_thresholds[0], 4 * poll_records), *_tuned_thresholds[1:])
    _tuned_services += 1
    try:
        yield
    finally:
        _tuned_services -= 1
        if _tuned_services == 0:
            gc.set_threshold(*_tuned_thresholds)
            gc.unfreeze()


_tuned_services = 0
_tuned_thresholds: tuple[int, int, int] = gc.get_threshold()


def build_app(settings: CaptureSettings, store: ObjectStore) -> FastStream:
    """A FastStream application for `flywheel capture` (SIGTERM/SIGINT flush before exit)."""
    service = CaptureService(settings, store)
    app = FastStream(service.broker, logger=log)
    ticker: list[asyncio.Task[None]] = []
    collector = contextlib.ExitStack()

    @app.after_startup
    async def _start_ticker() -> None:
        collector.enter_context(collector_tuned_for_polls(settings.poll_records))
        ticker.append(asyncio.create_task(service._tick()))

    @app.on_shutdown
    async def _flush() -> None:
        for task in ticker:
            task.cancel()
        before = service.batcher.written
        await service.batcher.close()  # before the broker closes the consumer
        collector.close()
        log.info("capture stopped: %d events written to the lake this run (%d flushed at exit)",
                 service.batcher.written, service.batcher.written - before)

    return app
