"""Buffers validated events per partition and makes them durable in order.

A flush turns the partitions' buffers into one Delta commit of the raw table that also records each
partition's last offset (so a replay is skipped, not rewritten), then commits exactly those offsets to
Kafka (for lag monitoring and the next start), from a single writer thread: while batches are being
written, the consumer validates the next ones (the write is polars and I/O, which release
the GIL). Memory is bounded by the batch size, not by the stream: a partition's buffer is
flushed at `batch_size` events, all buffers together hold at most `buffered_batches` batch
sizes (the fullest is flushed early past that), and at most `queued_batches` batch sizes wait
for the writer (the consumer waits past that). A buffer holds its events as JSON-lines
chunks, one bytes object per poll, not one object per event.
Messages of an OTLP topic (`otlp_topics`: trace exports as the OpenTelemetry Collector's Kafka exporter writes
them) are converted first: each becomes the interactions of its LLM spans, all at the message's offset, or is
dead-lettered whole with the reason (services/otlp/convert.py).
Invalid messages go to the dead-letter sink first; their offsets are committed with the
partition's next flush. A failed write is retried until it succeeds: nothing is committed,
and nothing is lost, while the lake is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from operator import methodcaller
from typing import Protocol

from flywheel_feedback.services.capture.validate import Invalid, check_batch, json_lines
from flywheel_feedback.services.lake.events import PartitionRows, json_lines_frame, write_events
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.otlp.convert import convert_message

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


class KafkaRecord(Protocol):
    """The parts of a consumed Kafka message capture uses (confluent_kafka.Message has them)."""

    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Rejected:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str


@dataclass(slots=True)
class _Buffer:
    first_offset: int
    last_offset: int = -1
    started: float = field(default_factory=time.monotonic)
    chunks: list[bytes] = field(default_factory=list)  # valid events as JSON lines, one chunk per poll
    offsets: array[int] = field(default_factory=lambda: array("q"))  # the Kafka offset of each line

    @property
    def events(self) -> int:
        return len(self.offsets)


@dataclass(frozen=True, slots=True)
class FlushStats:
    events: int
    partitions: int  # Kafka partitions in the flush (one Delta commit for all of them)
    seconds: float


CommitOffsets = Callable[[dict[TopicPartition, int]], None]
DeadLetter = Callable[[Sequence[Rejected]], Awaitable[None]]

# Called from C over a whole poll: no Python frame per record.
_topic = methodcaller("topic")
_partition = methodcaller("partition")
_offset = methodcaller("offset")
_value = methodcaller("value")


class CaptureBatcher:
    def __init__(
        self,
        store: ObjectStore,
        *,
        writer: str,
        commit: CommitOffsets,
        dead_letter: DeadLetter,
        batch_size: int,
        flush_interval_s: float,
        max_event_bytes: int,
        compression_level: int = 1,
        retry_delay_s: float = 1.0,
        buffered_batches: int = 4,
        queued_batches: int = 2,
        on_flush: Callable[[FlushStats], None] | None = None,
        otlp_topics: Sequence[str] = (),
        max_otlp_bytes: int = 16 * 1024 * 1024,
        on_otlp_dropped: Callable[[Mapping[str, int]], None] | None = None,
    ) -> None:
        self._store = store
        self._writer_id = writer
        self._commit = commit
        self._dead_letter = dead_letter
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._max_event_bytes = max_event_bytes
        self._compression_level = compression_level
        self._retry_delay_s = retry_delay_s
        self._max_buffered = buffered_batches * batch_size
        self._max_queued = queued_batches * batch_size
        self._on_flush = on_flush
        self._otlp_topics = frozenset(otlp_topics)
        self._max_otlp_bytes = max_otlp_bytes
        self._on_otlp_dropped = on_otlp_dropped
        self._buffers: dict[TopicPartition, _Buffer] = {}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-writer")
        self._queued: deque[tuple[asyncio.Future[None], int]] = deque()  # writes in order, with their events
        self._queued_events = 0
        self._lock = asyncio.Lock()
        self._closed = False
        self.accepted = 0
        self.written = 0  # rows the lake took (a replayed batch it already holds adds none)
        self.rejected = 0
        self.otlp_dropped_spans = 0  # spans of OTLP messages that were not model calls, or could not be interactions

    async def add(self, records: Sequence[KafkaRecord]) -> None:
        """Validate and buffer a polled batch; flush the partitions that are full or old."""
        async with self._lock:
            if self._closed:
                return  # not committed, so read again after the restart
            rejected: list[Rejected] = []
            for tp, run in _runs(records):
                rejected += self._take(tp, run)
            if rejected:
                # Durable in the dead-letter topic before any offset past them is committed.
                await self._dead_letter(rejected)
                self.rejected += len(rejected)
            due = self._due()
            if due:
                await self._flush(due)

    def _take(self, tp: TopicPartition, run: list[KafkaRecord]) -> list[Rejected]:
        values = list(map(_value, run))
        offsets: list[int] = list(map(_offset, run))
        buf = self._buffers.get(tp)
        if buf is None:
            buf = self._buffers[tp] = _Buffer(first_offset=offsets[0])
        buf.last_offset = offsets[-1]
        if tp[0] in self._otlp_topics:
            rejected, values, offsets = self._convert_otlp(tp, run, values, offsets)
        else:
            bad = check_batch(values, max_bytes=self._max_event_bytes)
            rejected = [Rejected(*tp, offsets[i], run[i].key(), values[i], reason) for i, reason in bad.items()]
            if bad:
                values = [v for i, v in enumerate(values) if i not in bad]
                offsets = [o for i, o in enumerate(offsets) if i not in bad]
        if values:
            buf.chunks.append(json_lines(values))
            buf.offsets.extend(offsets)
        return rejected

    def _convert_otlp(
        self, tp: TopicPartition, run: list[KafkaRecord], values: list[bytes | None], offsets: list[int]
    ) -> tuple[list[Rejected], list[bytes | None], list[int]]:
        """The interactions of each OTLP message, at its offset; a message that cannot be read is rejected whole."""
        rejected: list[Rejected] = []
        events: list[bytes | None] = []
        at: list[int] = []
        for record, value, offset in zip(run, values, offsets, strict=True):
            converted = convert_message(
                value, max_message_bytes=self._max_otlp_bytes, max_event_bytes=self._max_event_bytes
            )
            if isinstance(converted, Invalid):
                rejected.append(Rejected(*tp, offset, record.key(), value, converted.reason))
                continue
            self.otlp_dropped_spans += converted.dropped_spans
            if converted.dropped and self._on_otlp_dropped is not None:
                self._on_otlp_dropped(converted.dropped)
            events += [event for _, event in converted.events]
            at += [offset] * len(converted.events)
        return rejected, events, at

    def _due(self) -> list[TopicPartition]:
        """Full partitions, and then the fullest others while all buffers together hold too much."""
        due = [tp for tp, b in self._buffers.items() if b.events >= self._batch_size]
        buffered = sum(b.events for tp, b in self._buffers.items() if tp not in due)
        if buffered > self._max_buffered:
            for tp in sorted(self._buffers, key=lambda tp: self._buffers[tp].events, reverse=True):
                if buffered <= self._max_buffered:
                    break
                if tp not in due:
                    due.append(tp)
                    buffered -= self._buffers[tp].events
        return due

    async def flush_due(self) -> None:
        """Flush partitions whose oldest buffered event waited longer than the flush interval."""
        async with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            due = [tp for tp, b in self._buffers.items() if now - b.started >= self._flush_interval_s]
            if due:
                await self._flush(due)

    async def close(self) -> None:
        """Flush everything and wait until it is durable and committed."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._buffers:
                await self._flush(list(self._buffers))
            while self._queued:
                await self._wait_oldest()
        self._writer.shutdown(wait=True)

    def drop(self, partitions: Sequence[TopicPartition]) -> None:
        """Forget buffered events of revoked partitions: their new owner reads them again."""
        for tp in partitions:
            self._buffers.pop(tp, None)

    async def _flush(self, partitions: list[TopicPartition]) -> None:
        batch = [(tp, self._buffers.pop(tp)) for tp in partitions]
        events = sum(b.events for _, b in batch)
        # Back-pressure: the consumer goes on while earlier batches are written, up to a bound.
        while self._queued and self._queued_events + events > self._max_queued:
            await self._wait_oldest()
        loop = asyncio.get_running_loop()
        self._queued.append((loop.run_in_executor(self._writer, self._write_and_commit, batch), events))
        self._queued_events += events

    async def _wait_oldest(self) -> None:
        written, events = self._queued[0]
        try:
            await written
        finally:
            self._queued.popleft()
            self._queued_events -= events

    def _write_and_commit(self, batch: list[tuple[TopicPartition, _Buffer]]) -> None:
        started = time.perf_counter()
        runs = []
        for (topic, partition), buf in batch:
            frame = json_lines_frame(buf.chunks, topic=topic, partition=partition, offsets=buf.offsets)
            buf.chunks = []  # the frame's `raw` column holds them now, without a copy
            runs.append(PartitionRows(topic, partition, frame, buf.last_offset))
        self._write_with_retry(runs)
        self._commit_with_retry({tp: buf.last_offset + 1 for tp, buf in batch})
        events = sum(b.events for _, b in batch)
        self.accepted += events
        if self._on_flush is not None:
            self._on_flush(FlushStats(events=events, partitions=len(runs), seconds=time.perf_counter() - started))

    def _write_with_retry(self, runs: list[PartitionRows]) -> None:
        attempt = 0
        while True:
            try:
                self.written += write_events(self._store, runs, writer=self._writer_id,
                                             compression_level=self._compression_level)
                return
            except Exception as e:  # a retry re-reads the table's offsets: a commit that did land is not repeated
                attempt += 1
                ranges = ", ".join(f"{r.topic}[{r.partition}]..{r.last_offset}" for r in runs)
                log.warning("writing %s to %s failed (attempt %d), retrying: %s", ranges, self._store.url, attempt, e)
                time.sleep(min(self._retry_delay_s * attempt, 30.0))

    def _commit_with_retry(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            self._commit(offsets)
        except Exception as e:
            # The lake holds the offsets too: a replay after a failed commit is skipped on write.
            log.warning("committing offsets %s failed (the batch will be replayed): %s", offsets, e)


def _runs(records: Sequence[KafkaRecord]) -> Iterator[tuple[TopicPartition, list[KafkaRecord]]]:
    """The records of a poll in runs of one partition each (a poll returns them so)."""
    for _, same_partition in groupby(records, _partition):
        for _, same_topic in groupby(same_partition, _topic):
            run = list(same_topic)
            yield (run[0].topic() or "", run[0].partition() or 0), run
