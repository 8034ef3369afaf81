"""Buffers validated events per partition and makes them durable in order.

A flush turns each partition's buffer into Parquet files named by their Kafka range, then
commits exactly the offsets it wrote, from a single writer thread: while one batch is being
written, the consumer validates the next (the write is mostly polars and I/O, which release
the GIL). At most one write is in flight, so memory stays bounded by the batch size.
Invalid messages go to the dead-letter sink first; their offsets are committed with the
partition's next flush. A failed write is retried until it succeeds: nothing is committed,
and nothing is lost, while the lake is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from services.capture.validate import Invalid, check_message
from services.lake.events import events_frame, write_events
from services.lake.store import ObjectStore

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
    lines: list[bytes] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FlushStats:
    events: int
    files: int
    seconds: float


CommitOffsets = Callable[[dict[TopicPartition, int]], None]
DeadLetter = Callable[[Sequence[Rejected]], Awaitable[None]]


class CaptureBatcher:
    def __init__(
        self,
        store: ObjectStore,
        *,
        commit: CommitOffsets,
        dead_letter: DeadLetter,
        batch_size: int,
        flush_interval_s: float,
        max_event_bytes: int,
        compression_level: int = 1,
        retry_delay_s: float = 1.0,
        on_flush: Callable[[FlushStats], None] | None = None,
    ) -> None:
        self._store = store
        self._commit = commit
        self._dead_letter = dead_letter
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._max_event_bytes = max_event_bytes
        self._compression_level = compression_level
        self._retry_delay_s = retry_delay_s
        self._on_flush = on_flush
        self._buffers: dict[TopicPartition, _Buffer] = {}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-writer")
        self._in_flight: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self.accepted = 0
        self.rejected = 0

    async def add(self, records: Sequence[KafkaRecord]) -> None:
        """Validate and buffer a polled batch; flush the partitions that are full or old."""
        async with self._lock:
            if self._closed:
                return  # not committed, so read again after the restart
            rejected: list[Rejected] = []
            buffers = self._buffers
            limit = self._max_event_bytes
            check = check_message
            last: tuple[str, int] | None = None
            buf: _Buffer | None = None
            for record in records:
                topic, partition, offset = record.topic() or "", record.partition() or 0, record.offset() or 0
                if (topic, partition) != last:  # records come in runs per partition
                    last = (topic, partition)
                    buf = buffers.get(last)
                    if buf is None:
                        buf = buffers[last] = _Buffer(first_offset=offset)
                assert buf is not None
                buf.last_offset = offset
                value = record.value()
                verdict = check(value, max_bytes=limit)
                if isinstance(verdict, Invalid):
                    rejected.append(Rejected(topic, partition, offset, record.key(), value, verdict.reason))
                    continue
                buf.lines.append(verdict)
                buf.offsets.append(offset)
            if rejected:
                # Durable in the dead-letter topic before any offset past them is committed.
                await self._dead_letter(rejected)
                self.rejected += len(rejected)
            due = [tp for tp, b in buffers.items() if len(b.lines) >= self._batch_size]
            if due:
                await self._flush(due)

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
            if self._in_flight is not None:
                await self._in_flight
                self._in_flight = None
        self._writer.shutdown(wait=True)

    def drop(self, partitions: Sequence[TopicPartition]) -> None:
        """Forget buffered events of revoked partitions: their new owner reads them again."""
        for tp in partitions:
            self._buffers.pop(tp, None)

    async def _flush(self, partitions: list[TopicPartition]) -> None:
        batch = {tp: self._buffers.pop(tp) for tp in partitions}
        if self._in_flight is not None:
            await self._in_flight  # back-pressure: one write at a time, in order
        loop = asyncio.get_running_loop()
        self._in_flight = loop.run_in_executor(self._writer, self._write_and_commit, batch)

    def _write_and_commit(self, batch: dict[TopicPartition, _Buffer]) -> None:
        started = time.perf_counter()
        files = 0
        for (topic, partition), buf in batch.items():
            files += self._write_with_retry(topic, partition, buf)
        self._commit_with_retry({tp: buf.last_offset + 1 for tp, buf in batch.items()})
        events = sum(len(b.lines) for b in batch.values())
        self.accepted += events
        if self._on_flush is not None:
            self._on_flush(FlushStats(events=events, files=files, seconds=time.perf_counter() - started))

    def _write_with_retry(self, topic: str, partition: int, buf: _Buffer) -> int:
        frame = events_frame(buf.lines, topic=topic, partition=partition, offsets=buf.offsets)
        attempt = 0
        while True:
            try:
                keys = write_events(
                    self._store,
                    frame,
                    topic=topic,
                    partition=partition,
                    first_offset=buf.first_offset,
                    last_offset=buf.last_offset,
                    compression_level=self._compression_level,
                )
                return len(keys)
            except Exception as e:
                attempt += 1
                log.warning(
                    "writing %s[%d] offsets %d..%d to %s failed (attempt %d), retrying: %s",
                    topic,
                    partition,
                    buf.first_offset,
                    buf.last_offset,
                    self._store.url,
                    attempt,
                    e,
                )
                time.sleep(min(self._retry_delay_s * attempt, 30.0))

    def _commit_with_retry(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            self._commit(offsets)
        except Exception as e:
            # The files are written under names fixed by their range, so a replay after a
            # failed commit rewrites them; readers deduplicate by event_id.
            log.warning("committing offsets %s failed (the batch will be replayed): %s", offsets, e)
