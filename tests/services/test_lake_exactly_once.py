"""Capture's commits stay exactly-once when two writers hold the same Kafka partition at once (a consumer group
rebalancing): the check against the table's recorded offsets holds inside the commit, not only before it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.events import PartitionRows, events_frame, write_events
from flywheel_feedback.services.lake.store import LocalStore, ObjectStore
from flywheel_feedback.services.lake.tables import RAW_EVENTS

WRITER = "capture/test"


def run(first: int, last: int, *, partition: int = 0) -> PartitionRows:
    lines = [
        json.dumps({"event_id": f"p{partition}-e{i}", "type": "dwell", "ts": "2026-11-27T10:00:00Z",
                    "interaction_id": f"i{i}", "dwell_ms": i}).encode()
        for i in range(first, last + 1)
    ]
    frame = events_frame(lines, topic="t", partition=partition, offsets=range(first, last + 1))
    return PartitionRows("t", partition, frame, last)


def stored(store: ObjectStore) -> pl.DataFrame:
    return delta.scan(store, RAW_EVENTS).select("kafka_partition", "kafka_offset", "event_id").collect()


def assert_each_record_once(store: ObjectStore, expected: int) -> None:
    rows = stored(store)
    assert rows.height == expected
    assert rows.select("kafka_partition", "kafka_offset").n_unique() == expected
    assert rows.get_column("event_id").n_unique() == expected


def commit_between_read_and_commit(monkeypatch: pytest.MonkeyPatch, competitor: Any) -> list[str]:
    """Run `competitor()` (another writer's whole commit) once, after our writer read the table's offsets and
    before it commits: the window a rebalance opens. Returns a log of our writer's file writes."""
    original = delta._write_file
    writes: list[str] = []
    state = {"ran": False, "inside": False}

    def write_file(*args: Any, **kwargs: Any) -> Any:
        if not state["ran"] and not state["inside"]:
            state["ran"] = state["inside"] = True
            try:
                competitor()
            finally:
                state["inside"] = False
        if not state["inside"]:
            writes.append("ours")
        return original(*args, **kwargs)

    monkeypatch.setattr(delta, "_write_file", write_file)
    return writes


def test_delta_rs_fails_a_commit_whose_app_id_a_concurrent_commit_recorded(tmp_path: Path) -> None:
    """What the design rests on (delta-rs 1.x): the conflict checker fails a commit when a commit that landed
    after its snapshot carries the same application-transaction id; other app ids are retried past."""
    uri = str(tmp_path / "t")
    write_deltalake(uri, pl.DataFrame({"a": [0]}).to_arrow(), mode="append")

    def append(table: DeltaTable, app_id: str, version: int) -> None:
        write_deltalake(
            table, pl.DataFrame({"a": [version]}).to_arrow(), mode="append",
            commit_properties=CommitProperties(app_transactions=[Transaction(app_id, version)], max_commit_retries=50),
        )

    first, second = DeltaTable(uri), DeltaTable(uri)
    append(first, "w/t/0", 1)
    with pytest.raises(CommitFailedError, match="Concurrent transaction"):
        append(second, "w/t/0", 1)

    first, second = DeltaTable(uri), DeltaTable(uri)
    append(first, "w/t/1", 1)
    append(second, "w/t/2", 1)  # another partition: no conflict
    assert DeltaTable(uri).to_pyarrow_table().num_rows == 4


def test_a_range_committed_concurrently_is_dropped_not_written_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "lake")
    write_events(store, [run(0, 9)], writer=WRITER)
    # the old owner of the partition commits offsets 10..19 while the new owner is writing the same range
    competitor_rows: list[int] = []
    writes = commit_between_read_and_commit(
        monkeypatch, lambda: competitor_rows.append(write_events(store, [run(10, 19)], writer=WRITER))
    )
    assert write_events(store, [run(10, 19)], writer=WRITER) == 0
    assert competitor_rows == [10]
    assert writes == ["ours"]  # one attempt wrote files; the second found nothing left to write
    assert_each_record_once(store, 20)
    assert delta.transaction_versions(store, RAW_EVENTS, [f"{WRITER}/t/0"]) == {f"{WRITER}/t/0": 19}


def test_a_partly_covered_range_commits_only_its_new_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "lake")
    write_events(store, [run(0, 9), run(0, 4, partition=1)], writer=WRITER)
    commit_between_read_and_commit(monkeypatch, lambda: write_events(store, [run(10, 14)], writer=WRITER))
    # ours spans two partitions; the competitor covered part of one
    assert write_events(store, [run(10, 19), run(5, 9, partition=1)], writer=WRITER) == 10
    assert_each_record_once(store, 30)
    assert delta.transaction_versions(store, RAW_EVENTS, [f"{WRITER}/t/0", f"{WRITER}/t/1"]) == {
        f"{WRITER}/t/0": 19, f"{WRITER}/t/1": 9,
    }


def test_a_concurrent_commit_of_other_partitions_costs_no_second_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "lake")
    write_events(store, [run(0, 9)], writer=WRITER)
    writes = commit_between_read_and_commit(
        monkeypatch, lambda: write_events(store, [run(0, 9, partition=1)], writer=WRITER)
    )
    assert write_events(store, [run(10, 19)], writer=WRITER) == 10
    assert writes == ["ours"]
    assert_each_record_once(store, 30)


def test_two_writers_creating_the_table_at_once_write_each_record_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first flush into a fresh lake: ours creates the table, the competitor commits the range meanwhile."""
    store = LocalStore(tmp_path / "lake")
    commit_between_read_and_commit(monkeypatch, lambda: write_events(store, [run(0, 9)], writer=WRITER))
    assert write_events(store, [run(0, 9)], writer=WRITER) == 0
    assert_each_record_once(store, 10)
