"""Deleting rows leaves nothing of them: not the files (purged), not the log (no predicate; statistics of
non-personal columns only), also in a table an older flywheel made with statistics of every column."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from deltalake import DeltaTable, write_deltalake

from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.deletes import delete_rows, purge
from flywheel_feedback.services.lake.delta import STATS_COLUMNS, STATS_LIMITED_AT, TableSpec
from flywheel_feedback.services.lake.store import LocalStore

SPEC = TableSpec("test/people", pl.Schema({"user_id": pl.String(), "text": pl.String(), "n": pl.Int64(),
                                           "day": pl.String()}), partition_by=("day",), keys=("user_id", "n"),
                 stats=("n",))
ROWS = pl.DataFrame({"user_id": ["aaa-first", "zzz-last", "mmm"] * 4, "text": ["secret of a", "secret of z", "m"] * 4,
                     "n": list(range(12)), "day": ["d1"] * 6 + ["d2"] * 6})


def log_text(store: LocalStore) -> str:
    return "".join(p.read_text(errors="replace") for p in (store.root / SPEC.name / "_delta_log").glob("*.json"))


def all_bytes(store: LocalStore) -> bytes:
    return b"".join(p.read_bytes() for p in (store.root / SPEC.name).rglob("*") if p.is_file())


def test_a_table_made_with_every_columns_statistics_is_cleaned_up_by_the_first_delete(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    for day in ("d1", "d2"):  # as an older flywheel wrote: delta-rs records every column's min and max
        write_deltalake(store.table_uri(SPEC.name), ROWS.filter(pl.col("day") == day).to_arrow(), mode="append",
                        partition_by=["day"])
    assert "zzz-last" in log_text(store) and "secret of z" in log_text(store)

    gone = delete_rows(store, SPEC, pl.col("user_id") == "zzz-last", columns=["user_id"], metadata={"by": "test"})
    assert gone.rows.height == 4 and gone.files_rewritten == 2
    table = DeltaTable(store.table_uri(SPEC.name))
    config = table.metadata().configuration
    assert config[STATS_COLUMNS] == "n" and STATS_LIMITED_AT in config
    purged = purge(store, SPEC.name)
    assert purged.vacuumed == 2 and purged.log_entries_removed > 0
    assert b"zzz-last" not in all_bytes(store) and "zzz-last" not in log_text(store)
    kept = delta.scan(store, SPEC).collect().sort("n")
    assert kept.equals(ROWS.filter(pl.col("user_id") != "zzz-last").sort("n").select(kept.columns))
    # a later delete in the clean table: no predicate in the log, statistics of `n` only, nothing left to clean
    delete_rows(store, SPEC, pl.col("user_id") == "aaa-first", columns=["user_id"], metadata={"by": "test"})
    assert purge(store, SPEC.name).log_entries_removed == 0
    assert "aaa-first" not in log_text(store) and b"aaa-first" not in all_bytes(store)
    assert "secret" not in log_text(store)
    assert delta.scan(store, SPEC).collect().get_column("user_id").unique().to_list() == ["mmm"]
