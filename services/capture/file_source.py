"""Capture from a JSON-lines file instead of Kafka: the embedded default of `flywheel demo`.

The same validation and batch writer run; the file stands in for one partition whose offsets
are line numbers, and rejected lines go to the lake's dead-letter folder with their reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from flywheel_feedback.services.capture.batcher import CaptureBatcher, Rejected, TopicPartition
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import DEAD_LETTER_PREFIX

__all__ = ["DEAD_LETTER_PREFIX", "FileCaptureResult", "capture_file"]


@dataclass(frozen=True, slots=True)
class _Line:
    _topic: str
    _offset: int
    _value: bytes

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


@dataclass
class FileCaptureResult:
    accepted: int
    rejected: int
    reasons: list[str]


def _content_id(path: Path) -> str:
    """Names a file by its content, so capturing it twice is recognised (its lines are the offsets)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def capture_file(
    path: Path,
    store: ObjectStore,
    *,
    batch_size: int = 50_000,
    max_event_bytes: int = 256 * 1024,
    progress: Callable[[int], None] | None = None,
) -> FileCaptureResult:
    topic = f"file.{path.stem}"
    reasons: list[str] = []

    async def dead_letter(items: Sequence[Rejected]) -> None:
        frame = pl.DataFrame(
            {
                "offset": [i.offset for i in items],
                "reason": [i.reason for i in items],
                "value": [i.value or b"" for i in items],
            }
        )
        buf = io.BytesIO()
        frame.write_parquet(buf)
        store.put(f"{DEAD_LETTER_PREFIX}/{topic}+0+{items[0].offset:020d}.parquet", buf.getvalue())
        reasons.extend(i.reason for i in items)

    def commit(offsets: dict[TopicPartition, int]) -> None:
        pass  # a file has no consumer group: the lake records how far into the file it got

    async def run() -> int:
        batcher = CaptureBatcher(
            store,
            writer=f"ingest/{_content_id(path)}",  # the same file again adds nothing; another file is new
            commit=commit,
            dead_letter=dead_letter,
            batch_size=batch_size,
            flush_interval_s=3600,
            max_event_bytes=max_event_bytes,
        )
        chunk: list[_Line] = []
        n = 0
        with path.open("rb") as f:
            for n, line in enumerate(f, start=1):
                chunk.append(_Line(topic, n - 1, line.rstrip(b"\n")))
                if len(chunk) == 5_000:
                    await batcher.add(chunk)
                    chunk = []
                    if progress is not None:
                        progress(n)
        await batcher.add(chunk)
        await batcher.close()
        return batcher.accepted

    accepted = asyncio.run(run())
    return FileCaptureResult(accepted=accepted, rejected=len(reasons), reasons=reasons)
