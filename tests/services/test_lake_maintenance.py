"""`flywheel lake optimize`: many small commits compact to few files, readers (and time travel within the
retention) see the same rows, and vacuum removes only what no live version needs."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable
from typer.testing import CliRunner

from flywheel_feedback.services.cli import app
from flywheel_feedback.services.errors import FlywheelError
from flywheel_feedback.services.lake import delta, maintenance, tables
from flywheel_feedback.services.lake.events import PartitionRows, events_frame, write_events
from flywheel_feedback.services.lake.maintenance import MaintenanceRunningError, lake_tables, optimize_lake
from flywheel_feedback.services.lake.store import LocalStore, ObjectStore, S3Store
from flywheel_feedback.services.lake.tables import RAW_EVENTS, delta_tables, write_table
from flywheel_feedback.services.serve.app import FlywheelServer, ServeSettings
from flywheel_feedback.services.settings import MaintenanceSettings

WRITER = "capture/test"
POSITION = ["kafka_partition", "kafka_offset"]
# a per-name table made at run time, declared nowhere (like a slice's), written one row per commit (like gold)
ANSWERS = delta.TableSpec("slices/demo/answers", pl.Schema({"id": pl.Int64(), "label": pl.String()}))


def flush(store: ObjectStore, k: int, *, size: int = 10) -> None:
    """One capture flush: partition k % 2, its next `size` offsets, dated one of two days."""
    partition, first = k % 2, (k // 2) * size
    lines = [
        json.dumps({"event_id": f"p{partition}-e{i}", "type": "dwell", "ts": f"2026-11-{26 + (k // 2) % 2}T10:00:00Z",
                    "interaction_id": f"i{i}", "dwell_ms": i}).encode()
        for i in range(first, first + size)
    ]
    frame = events_frame(lines, topic="t", partition=partition, offsets=range(first, first + size))
    write_events(store, [PartitionRows("t", partition, frame, first + size - 1)], writer=WRITER)


def small_commits(store: ObjectStore, commits: int) -> None:
    for k in range(commits):
        flush(store, k)
    for i in range(commits // 4):
        delta.append(store, ANSWERS, pl.DataFrame({"id": [i], "label": [f"l{i}"]}))


def rows(store: ObjectStore, spec: delta.TableSpec = RAW_EVENTS, *, version: int | None = None) -> pl.DataFrame:
    frame = delta.scan(store, spec, version=version).collect()
    return frame.sort(POSITION if spec is RAW_EVENTS else "id")


def table(store: ObjectStore, spec: delta.TableSpec, *, version: int | None = None) -> DeltaTable:
    found = delta.open_table(store, spec, version=version)
    assert found is not None
    return found


def stored_files(store: ObjectStore, spec: delta.TableSpec) -> set[str]:
    return {k.removeprefix(f"{spec.name}/") for k in store.list(spec.name) if "/_delta_log/" not in f"/{k}"}


def live_files(store: ObjectStore, spec: delta.TableSpec) -> set[str]:
    return set(pl.DataFrame(table(store, spec).get_add_actions(flatten=True)).get_column("path"))


def commit_actions(store: ObjectStore, spec: delta.TableSpec, version: int) -> list[dict[str, Any]]:
    text = store.get(f"{spec.name}/_delta_log/{version:020d}.json").decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def check_compaction(store: ObjectStore, commits: int) -> tuple[int, pl.DataFrame]:
    """Compact with the default retention and check what readers see; returns the version before and its rows."""
    small_commits(store, commits)
    before = table(store, RAW_EVENTS).version()
    raw_rows, answer_rows = rows(store), rows(store, ANSWERS)
    offsets = delta.transaction_versions(store, RAW_EVENTS, [f"{WRITER}/t/0", f"{WRITER}/t/1"])
    assert len(table(store, RAW_EVENTS).file_uris()) == commits

    result = optimize_lake(store)

    reports = {r.table: r for r in result.tables}
    assert set(reports) == {RAW_EVENTS.name, ANSWERS.name} and not result.failed
    raw = reports[RAW_EVENTS.name]
    assert (raw.files_before, raw.files_after, raw.compacted, raw.written) == (commits, 2, commits, 2)  # 2 dates
    assert raw.vacuumed == 0  # what compaction replaced is younger than the retention
    assert reports[ANSWERS.name].files_after == 1
    # readers see the same rows, capture's offsets are untouched, and the rewrite says it changed no data
    assert rows(store).equals(raw_rows) and rows(store, ANSWERS).equals(answer_rows)
    assert delta.transaction_versions(store, RAW_EVENTS, list(offsets)) == offsets
    optimize_commit = commit_actions(store, RAW_EVENTS, before + 1)
    changes = [a["add"] if "add" in a else a["remove"] for a in optimize_commit if "add" in a or "remove" in a]
    assert len(changes) == commits + 2 and all(c["dataChange"] is False for c in changes)
    # time travel within the retention: the version before compaction reads whole, from its own small files
    assert rows(store, version=before).equals(raw_rows)
    assert len(table(store, RAW_EVENTS, version=before).file_uris()) == commits
    return before, raw_rows


def check_forced_vacuum(store: ObjectStore, raw_rows: pl.DataFrame) -> None:
    """Retention 0, forced: every file no current version names goes, a never-committed one included."""
    orphan = "date=2026-11-27/part-orphan.zstd.parquet"  # a writer died between writing this and committing it
    store.put(f"{RAW_EVENTS.name}/{orphan}", b"not committed")
    assert optimize_lake(store).tables[0].vacuumed == 0  # a young orphan survives the default retention
    assert orphan in stored_files(store, RAW_EVENTS)

    unreferenced = stored_files(store, RAW_EVENTS) - live_files(store, RAW_EVENTS)

    result = optimize_lake(store, retention=timedelta(0), force=True)

    raw = next(r for r in result.tables if r.table == RAW_EVENTS.name)
    assert raw.vacuumed == len(unreferenced) > 1
    assert stored_files(store, RAW_EVENTS) == live_files(store, RAW_EVENTS)
    assert orphan not in stored_files(store, RAW_EVENTS)
    assert rows(store).equals(raw_rows)


def test_small_commits_compact_and_vacuum_keeps_what_live_versions_need(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    write_table(store, "labels/interactions.parquet", pl.DataFrame({"a": [1]}))  # not Delta: left alone
    before, raw_rows = check_compaction(store, commits=40)
    files_before_vacuum = len(stored_files(store, RAW_EVENTS))
    assert files_before_vacuum == 42  # the 40 replaced small files are still there, for time travel

    idle = optimize_lake(store)
    assert [r.version_after - r.version_before for r in idle.tables] == [0, 0]  # nothing to do: no commit

    check_forced_vacuum(store, raw_rows)
    assert len(stored_files(store, RAW_EVENTS)) == 2
    with pytest.raises(Exception):  # noqa: B017  (delta-rs or polars, whichever reads first: the files are gone)
        rows(store, version=before)


def test_the_checkpoint_is_taken_when_the_table_changed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    small_commits(store, 8)
    first = optimize_lake(store).tables
    assert all(r.checkpoint == r.version_after for r in first)
    assert store.exists(f"{RAW_EVENTS.name}/_delta_log/{first[0].version_after:020d}.checkpoint.parquet")
    assert all(r.checkpoint is None for r in optimize_lake(store).tables)


def test_every_table_is_found_declared_or_not(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    assert RAW_EVENTS in delta_tables()
    assert lake_tables(store) == []
    small_commits(store, 4)
    write_table(store, "slices/demo/v1/items.parquet", pl.DataFrame({"a": [1]}))
    store.put("state/labeler.json", b"{}")
    assert lake_tables(store) == [RAW_EVENTS.name, ANSWERS.name]


def test_declared_tables_include_dicts_of_them_and_placeholders_are_found_in_the_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = pl.Schema({"id": pl.Int64()})
    monkeypatch.setattr(tables, "KINDS", {"a": delta.TableSpec("kinds/a", schema)}, raising=False)
    monkeypatch.setattr(tables, "PER_NAME", delta.TableSpec("per-name/<name>", schema), raising=False)
    names = {spec.name for spec in delta_tables()}
    assert {RAW_EVENTS.name, "kinds/a", "per-name/<name>"} <= names
    store = LocalStore(tmp_path / "lake")
    delta.append(store, delta.TableSpec("kinds/a", schema), pl.DataFrame({"id": [1]}))
    delta.append(store, delta.TableSpec("per-name/x", schema), pl.DataFrame({"id": [1]}))
    assert lake_tables(store) == ["kinds/a", "per-name/x"]


def test_a_table_that_keeps_its_whole_history_is_not_compacted(tmp_path: Path) -> None:
    """Like a slice's versions table: every version is read by time travel, from the files its manifest lists."""
    store = LocalStore(tmp_path / "lake")
    spec = delta.TableSpec("slices/kept", pl.Schema({"version": pl.Int64(), "id": pl.Int64()}), partition_by=())
    DeltaTable.create(store.table_uri(spec.name), pl.DataFrame(schema=spec.schema).to_arrow().schema,
                      configuration={"delta.appendOnly": "true", "delta.enableExpiredLogCleanup": "false"})
    for k in range(6):
        delta.append(store, spec, pl.DataFrame({"version": [k], "id": [k]}))
    store.put(f"{spec.name}/part-orphan.parquet", b"never committed")
    report = optimize_lake(store, retention=timedelta(0), force=True).tables[0]
    assert report.keeps_history and (report.compacted, report.files_after, report.vacuumed) == (0, 6, 1)
    assert "keeps its whole history: not compacted" in report.summary()
    for version in range(1, 7):
        assert delta.scan(store, spec, version=version).collect().height == version


def test_a_retention_below_the_floor_needs_force(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    small_commits(store, 4)
    with pytest.raises(FlywheelError, match="below the floor"):
        optimize_lake(store, retention=timedelta(hours=1))
    with pytest.raises(ValueError, match="below the floor"):
        MaintenanceSettings(retention="1h")
    assert MaintenanceSettings(retention="1h", force=True).retention == timedelta(hours=1)
    assert MaintenanceSettings().retention == timedelta(days=7)


def test_runs_in_one_process_never_overlap(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    with maintenance._running, pytest.raises(MaintenanceRunningError):
        optimize_lake(store)


def test_a_failing_table_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    small_commits(store, 8)
    result = optimize_lake(store, tables=["raw/nothing-here", RAW_EVENTS.name])
    assert [r.error is None for r in result.tables] == [False, True]
    assert result.tables[1].files_after == 2


def test_the_cli_prints_each_table_and_a_summary(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    small_commits(LocalStore(lake), 8)
    runner = CliRunner()
    done = runner.invoke(app, ["lake", "optimize", "--lake", str(lake)])
    assert done.exit_code == 0, done.output
    assert "raw/events: v8 -> v9, files 8 -> 2 (compacted 8 into 2), vacuumed 0, checkpoint at v9" in done.output
    assert "2 tables: files 10 -> 3, vacuumed 0; 0 failed" in done.output
    refused = runner.invoke(app, ["lake", "optimize", "--lake", str(lake), "--retention", "0"])
    assert refused.exit_code == 1 and "below the floor" in refused.output
    forced = runner.invoke(app, ["lake", "optimize", "--lake", str(lake), "--retention", "0", "--force",
                                 "--table", RAW_EVENTS.name])
    assert forced.exit_code == 0 and "vacuumed 8" in forced.output


def test_serve_maintains_the_lake_and_a_failure_leaves_it_healthy(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    small_commits(store, 8)
    server = FlywheelServer(ServeSettings(), store)
    stage = next(s for s in server.stages() if s.name == "maintenance")
    assert stage.interval_s == 3600
    stage.work()
    assert len(table(store, RAW_EVENTS).file_uris()) == 2

    store.put(f"{RAW_EVENTS.name}/_delta_log/{table(store, RAW_EVENTS).version() + 1:020d}.json", b"not json")
    for _ in range(3):
        with pytest.raises(RuntimeError, match="raw/events: failed"):
            stage.work()
        server._failed(stage.name, RuntimeError("raw/events: failed"))
    ok, stages = server.stage_health()
    assert ok and stages["maintenance"]["ok"] is False
    assert server.health()[1]["components"]["maintenance"]["ok"] is False


@pytest.mark.s3
def test_compaction_and_vacuum_on_s3(s3_url: str, s3_options: dict[str, Any]) -> None:
    store = S3Store(s3_url, **s3_options)
    _, raw_rows = check_compaction(store, commits=12)
    check_forced_vacuum(store, raw_rows)
