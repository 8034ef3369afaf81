"""The lake is Delta Lake, so engines other than polars read it: DuckDB (its `delta` extension, loaded from the
PyPI package because this machine cannot download it) and the `deltalake` package's Arrow reader."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import duckdb_extension_delta
from deltalake import DeltaTable

from flywheel_feedback.services.capture.file_source import capture_file
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.lake.tables import RAW_EVENTS


def delta_extension() -> Path:
    found = sorted(Path(duckdb_extension_delta.__file__).parent.rglob("delta.duckdb_extension"))
    assert found, "duckdb-extension-delta ships no extension file"
    return found[-1]


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

    con = duckdb.connect()
    con.execute(f"LOAD '{delta_extension()}'")
    rows = con.execute(
        f"SELECT CAST(date AS VARCHAR), count(*), sum(dwell_ms) FROM delta_scan('{uri}') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [("2026-11-26", 5, 2000), ("2026-11-27", 5, 2500)]

    table = DeltaTable(uri).to_pyarrow_table(columns=["event_id", "kafka_offset"])
    assert sorted(table.column("kafka_offset").to_pylist()) == list(range(10))
