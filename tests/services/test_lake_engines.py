"""The lake is Delta Lake, so engines other than polars read it: DuckDB (its `delta` extension, loaded from the
PyPI package because this machine cannot download it) and the `deltalake` package's Arrow reader. The README's
"Reading the lake with other engines" shows the same reads."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import duckdb_extension_delta
import polars as pl
import pytest
from deltalake import DeltaTable

from flywheel_feedback.services.capture.file_source import capture_file
from flywheel_feedback.services.labeler.pipeline import LabelerOptions, label_pass
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.labels import read_labels
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.lake.tables import RAW_EVENTS
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig

LABELS_TABLE = "labels/interactions"  # the labels' Delta table (tables.py declares it once it is one)


def delta_extension() -> Path:
    found = sorted(Path(duckdb_extension_delta.__file__).parent.rglob("delta.duckdb_extension"))
    assert found, "duckdb-extension-delta ships no extension file"
    return found[-1]


def duckdb_with_delta() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"LOAD '{delta_extension()}'")
    return con


@pytest.fixture(scope="module")
def labeled_lake(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """A small simulated lake after one real labeler pass."""
    root = tmp_path_factory.mktemp("labeled")
    events = root / "events.jsonl"
    simulate_to_file(SimulationConfig(interactions=400, seed=11), events, root / "truth.parquet")
    store = LocalStore(root / "lake")
    capture_file(events, store)
    assert label_pass(store, options=LabelerOptions(folds=3)).changed
    return store


def test_duckdb_and_deltalake_read_the_raw_table(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    lines = [
        {"event_id": f"e{i}", "type": "dwell", "ts": f"2026-11-{26 + i % 2}T10:00:00Z", "interaction_id": f"i{i}",
         "dwell_ms": 100 * i}
        for i in range(10)
    ]
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    store = LocalStore(tmp_path / "lake")
    assert capture_file(events, store).accepted == 10
    uri = store.table_uri(RAW_EVENTS.name)

    con = duckdb_with_delta()
    rows = con.execute(
        f"SELECT CAST(date AS VARCHAR), count(*), sum(dwell_ms) FROM delta_scan('{uri}') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [("2026-11-26", 5, 2000), ("2026-11-27", 5, 2500)]

    table = DeltaTable(uri).to_pyarrow_table(columns=["event_id", "kafka_offset"])
    assert sorted(table.column("kafka_offset").to_pylist()) == list(range(10))


def test_duckdb_reads_the_raw_table_of_a_labeled_lake(labeled_lake: LocalStore) -> None:
    uri = labeled_lake.table_uri(RAW_EVENTS.name)
    stored = delta.scan(labeled_lake, RAW_EVENTS).group_by("type").agg(pl.len()).sort("type").collect().rows()
    rows = duckdb_with_delta().execute(
        f"SELECT type, count(*) FROM delta_scan('{uri}') GROUP BY type ORDER BY type"
    ).fetchall()
    assert rows == stored and len(rows) > 2


def test_duckdb_reads_the_labels_table(labeled_lake: LocalStore) -> None:
    labels = read_labels(labeled_lake, columns=["interaction_id"])
    assert labels is not None and labels.height
    uri = labeled_lake.table_uri(LABELS_TABLE)
    rows, ids = duckdb_with_delta().execute(
        f"SELECT count(*), count(DISTINCT interaction_id) FROM delta_scan('{uri}')"
    ).fetchone() or (0, 0)
    assert rows == ids == labels.height
    assert DeltaTable(uri).to_pyarrow_table(columns=["interaction_id"]).num_rows == labels.height
    # the label itself, joined in SQL as the README shows, is what read_labels gives
    patterns = labeled_lake.table_uri("labels/patterns")
    joined = duckdb_with_delta().execute(
        "SELECT l.interaction_id,"
        " CASE WHEN l.gold_label IS NOT NULL THEN l.gold_label WHEN p.weak_label <> -1 THEN p.weak_label"
        " ELSE -1 END AS label,"
        " CASE WHEN l.gold_label IS NOT NULL OR p.weak_label <> -1 THEN p.confidence END AS confidence,"
        " CASE WHEN l.gold_label IS NOT NULL THEN 'human' WHEN p.weak_label <> -1 THEN 'weak' ELSE 'none' END"
        " AS source"
        f" FROM delta_scan('{uri}') l LEFT JOIN delta_scan('{patterns}') p USING (pattern) ORDER BY 1"
    ).pl()
    expected = read_labels(labeled_lake, columns=["interaction_id", "label", "confidence", "source"])
    assert expected is not None
    assert joined.equals(expected.sort("interaction_id"), null_equal=True)
