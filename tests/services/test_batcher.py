from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from flywheel_feedback.services.capture.batcher import CaptureBatcher, Rejected, TopicPartition
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.events import committed_offsets, read_events
from flywheel_feedback.services.lake.store import LocalStore, ObjectStore
from flywheel_feedback.services.lake.tables import RAW_EVENTS

WRITER = "capture/test"


def table_rows(store: ObjectStore) -> pl.DataFrame:
    """Every row of the raw table as stored (no deduplication)."""
    return delta.scan(store, RAW_EVENTS).sort("kafka_partition", "kafka_offset").collect()


def table_commits(store: ObjectStore) -> int:
    """Commits that wrote events (the table is created empty first)."""
    table = delta.open_table(store, RAW_EVENTS)
    return 0 if table is None else sum(1 for c in table.history() if c["operation"] == "WRITE")


@dataclass(frozen=True)
class Record:
    _value: bytes | None
    _offset: int
    _partition: int = 0
    _topic: str = "t"

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


def event(i: int, *, day: int = 27) -> bytes:
    return json.dumps(
        {
            "event_id": f"e{i}",
            "type": "dwell",
            "ts": f"2026-11-{day}T10:00:00Z",
            "interaction_id": f"i{i}",
            "dwell_ms": i,
            "extra_field": "kept",
        }
    ).encode()


class Harness:
    def __init__(self, root: Path, **options: object) -> None:
        self.store = LocalStore(root)
        self.commits: list[dict[TopicPartition, int]] = []
        self.dead: list[Rejected] = []
        self.order: list[str] = []

        async def dead_letter(items: Sequence[Rejected]) -> None:
            self.dead.extend(items)
            self.order.append("dead-letter")

        def commit(offsets: dict[TopicPartition, int]) -> None:
            self.commits.append(offsets)
            self.order.append("commit")

        settings: dict[str, object] = {"batch_size": 1000, "flush_interval_s": 60.0, "max_event_bytes": 2048}
        settings.update(options)
        self.batcher = CaptureBatcher(
            self.store, writer=WRITER, commit=commit, dead_letter=dead_letter, **settings  # type: ignore[arg-type]
        )


def test_a_full_batch_is_one_commit_with_its_offsets_and_then_committed(tmp_path: Path) -> None:
    h = Harness(tmp_path, batch_size=3)

    async def run() -> None:
        await h.batcher.add([Record(event(i), i) for i in range(3)])
        await h.batcher.close()

    asyncio.run(run())
    assert table_commits(h.store) == 1
    assert committed_offsets(h.store, WRITER, [("t", 0)]) == {("t", 0): 2}
    assert h.commits == [{("t", 0): 3}]
    frame = read_events(h.store)
    assert frame.get_column("event_id").to_list() == ["e0", "e1", "e2"]
    assert json.loads(frame.get_column("raw")[0])["extra_field"] == "kept"
    assert frame.get_column("ts").dtype == pl.Datetime("us", "UTC")


def test_invalid_messages_are_dead_lettered_before_their_offsets_are_committed(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def run() -> None:
        await h.batcher.add([Record(event(0), 0), Record(b"{nope", 1), Record(event(2), 2), Record(None, 3)])
        await h.batcher.close()

    asyncio.run(run())
    assert [(d.offset, d.reason.split(":")[0]) for d in h.dead] == [(1, "invalid JSON"), (3, "empty message")]
    assert h.dead[0].value == b"{nope"
    assert h.order == ["dead-letter", "commit"]
    assert h.commits == [{("t", 0): 4}]
    assert read_events(h.store).height == 2


def test_a_batch_spanning_days_is_split_by_event_date(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def run() -> None:
        await h.batcher.add([Record(event(0, day=26), 10), Record(event(1, day=27), 11)])
        await h.batcher.close()

    asyncio.run(run())
    assert table_commits(h.store) == 1
    folders = sorted(p.name for p in (tmp_path / RAW_EVENTS.name).iterdir() if p.name.startswith("date="))
    assert folders == ["date=2026-11-26", "date=2026-11-27"]
    assert table_rows(h.store).get_column("date").cast(pl.String).to_list() == ["2026-11-26", "2026-11-27"]


def test_a_replay_adds_nothing_and_readers_deduplicate_what_producers_sent_twice(tmp_path: Path) -> None:
    for _ in range(2):
        h = Harness(tmp_path)

        async def run(h: Harness = h) -> None:
            await h.batcher.add([Record(event(i), i) for i in range(5)])
            # the producer retried: the same event again at a later offset
            await h.batcher.add([Record(event(4), 5)])
            await h.batcher.close()

        asyncio.run(run())
    # The second run replayed offsets 0..5: the table holds each Kafka record once, in one commit.
    assert table_commits(h.store) == 1
    assert table_rows(h.store).get_column("kafka_offset").to_list() == [0, 1, 2, 3, 4, 5]
    assert read_events(h.store).get_column("event_id").to_list() == ["e0", "e1", "e2", "e3", "e4"]


def test_partitions_are_written_separately(tmp_path: Path) -> None:
    h = Harness(tmp_path, batch_size=2)

    async def run() -> None:
        await h.batcher.add([Record(event(0), 0, 0), Record(event(1), 0, 1), Record(event(2), 1, 0)])
        await h.batcher.add([Record(event(3), 1, 1)])
        await h.batcher.close()

    asyncio.run(run())
    assert committed_offsets(h.store, WRITER, [("t", 0), ("t", 1)]) == {("t", 0): 1, ("t", 1): 1}
    assert table_rows(h.store).select("kafka_partition", "kafka_offset").rows() == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {k: v for c in h.commits for k, v in c.items()} == {("t", 0): 2, ("t", 1): 2}


def test_old_buffers_are_flushed_by_time(tmp_path: Path) -> None:
    h = Harness(tmp_path, flush_interval_s=0.05)

    async def run() -> None:
        await h.batcher.add([Record(event(0), 0)])
        await h.batcher.flush_due()
        assert h.commits == []
        await asyncio.sleep(0.06)
        await h.batcher.flush_due()
        await h.batcher.close()

    asyncio.run(run())
    assert h.commits == [{("t", 0): 1}]


class FlakyStore(LocalStore):
    failures = 2

    def table_uri(self, name: str) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("lake unreachable")
        return super().table_uri(name)


def test_an_unreachable_lake_is_retried_and_nothing_is_committed_meanwhile(tmp_path: Path) -> None:
    commits: list[dict[TopicPartition, int]] = []

    async def dead_letter(items: Sequence[Rejected]) -> None:
        raise AssertionError("no invalid input here")

    store = FlakyStore(tmp_path)
    batcher = CaptureBatcher(
        store,
        writer=WRITER,
        commit=commits.append,
        dead_letter=dead_letter,
        batch_size=10,
        flush_interval_s=60,
        max_event_bytes=2048,
        retry_delay_s=0.01,
    )

    async def run() -> None:
        await batcher.add([Record(event(i), i) for i in range(3)])
        await batcher.close()

    asyncio.run(run())
    assert store.failures == 0
    assert commits == [{("t", 0): 3}]
    assert read_events(store).height == 3


def test_records_after_close_are_left_for_the_next_start(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def run() -> None:
        await h.batcher.close()
        await h.batcher.add([Record(event(0), 0)])

    asyncio.run(run())
    assert h.commits == [] and table_commits(h.store) == 0


def test_timestamps_in_every_iso_form_land_in_utc(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    # every RFC 3339 form the contract accepts (the schema's pattern; see schemas/wire.py)
    forms = ["2026-11-27T10:00:00Z", "2026-11-27T11:00:00.5+01:00", "2026-11-27t10:00:00z", "2026-11-27T05:00:00-05:00"]

    async def run() -> None:
        records = [
            Record(json.dumps({"event_id": f"e{i}", "type": "accept", "ts": ts, "interaction_id": "i"}).encode(), i)
            for i, ts in enumerate(forms)
        ]
        await h.batcher.add(records)
        await h.batcher.close()

    asyncio.run(run())
    got = read_events(h.store).sort("event_id").get_column("ts").dt.strftime("%H:%M:%S%.6f").to_list()
    assert got == ["10:00:00.000000", "10:00:00.500000", "10:00:00.000000", "10:00:00.000000"]


def test_files_no_commit_names_are_invisible(tmp_path: Path) -> None:
    h = Harness(tmp_path, batch_size=3)

    async def run() -> None:
        await h.batcher.add([Record(event(i), i) for i in range(3)])
        await h.batcher.close()

    asyncio.run(run())
    # What a writer that died before its commit leaves behind: a data file the Delta log does not name.
    day = tmp_path / RAW_EVENTS.name / "date=2026-11-27"
    (day / "part-00000-orphan.zstd.parquet").write_bytes(next(day.glob("*.parquet")).read_bytes())
    assert read_events(h.store).height == 3 and table_rows(h.store).height == 3


@pytest.mark.parametrize("size", [1, 7])
def test_memory_is_bounded_by_the_batch_size(tmp_path: Path, size: int) -> None:
    h = Harness(tmp_path, batch_size=size)

    async def run() -> None:
        for i in range(20):
            await h.batcher.add([Record(event(i), i)])
            assert all(b.events < size for b in h.batcher._buffers.values())
        await h.batcher.close()

    asyncio.run(run())
    assert read_events(h.store).height == 20


def test_pretty_printed_events_are_kept_whole_on_one_line(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    pretty = json.dumps(json.loads(event(1)), indent=2).replace("\n", "\r\n").encode()

    async def run() -> None:
        await h.batcher.add([Record(event(0), 0), Record(pretty, 1), Record(event(2), 2)])
        await h.batcher.close()

    asyncio.run(run())
    raw = read_events(h.store).sort("kafka_offset").get_column("raw").to_list()
    assert [json.loads(r)["event_id"] for r in raw] == ["e0", "e1", "e2"]
    assert not any("\n" in r or "\r" in r for r in raw)
    assert raw[0] == event(0).decode()


def test_buffers_of_many_partitions_together_stay_within_a_few_batches(tmp_path: Path) -> None:
    h = Harness(tmp_path, batch_size=10, buffered_batches=2)

    async def run() -> None:
        for i in range(6):  # 8 partitions, 6 events each: 48 events, more than 2 batches of 10
            await h.batcher.add([Record(event(p * 10 + i), i, p) for p in range(8)])
            assert sum(b.events for b in h.batcher._buffers.values()) <= 20
        await h.batcher.close()

    asyncio.run(run())
    assert read_events(h.store).height == 48
    assert {k: v for c in h.commits for k, v in c.items()} == {("t", p): 6 for p in range(8)}
