"""The incremental labeler against a full relabel: traffic streamed into the lake in 20 increments, a pass after
each, then one full relabel of a copy of the final lake. Late events (offline clients) and abandonment windows
that close only on a later pass are in the traffic."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import polars as pl

from flywheel_feedback.services.capture.file_source import capture_file
from flywheel_feedback.services.labeler.pipeline import LabelerOptions, label_pass
from flywheel_feedback.services.lake.labels import read_labels
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig

COMPARED = ["interaction_id", "label", "weak_label", "confidence", "prob_good", "pattern", "abandoned_inferred",
            "n_feedback", "edit_ratio", "rephrase_similarity", "explicit_label", "implicit_label"]
OPTIONS = LabelerOptions(folds=3, abandon_window=timedelta(minutes=30))


def test_twenty_incremental_passes_label_as_one_full_relabel(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    simulate_to_file(SimulationConfig(interactions=3000, seed=17, hours=30, late_rate=0.08), events,
                     tmp_path / "truth.parquet")
    lines = events.read_bytes().splitlines(keepends=True)  # in arrival order
    store = LocalStore(tmp_path / "lake")
    step = -(-len(lines) // 20)
    passes: list[pl.DataFrame] = []
    for k in range(20):
        part = tmp_path / f"part-{k:02d}.jsonl"
        part.write_bytes(b"".join(lines[k * step:(k + 1) * step]))
        capture_file(part, store)
        result = label_pass(store, options=OPTIONS)
        assert result.changed and result.mode == ("full" if k == 0 else "incremental"), result
        seen = read_labels(store, columns=["interaction_id", "abandoned_inferred", "n_feedback"])
        assert seen is not None
        passes.append(seen.with_columns(pl.lit(k).alias("after_pass")))

    history = pl.concat(passes)
    # windows that were open on one pass and decided on a later one, and feedback that joined later
    open_then_decided = (
        history.group_by("interaction_id")
        .agg(pl.col("abandoned_inferred").is_null().any().alias("was_open"),
             pl.col("abandoned_inferred").is_not_null().last().alias("decided"))
        .filter(pl.col("was_open") & pl.col("decided"))
    )
    assert open_then_decided.height > 100
    grew = history.group_by("interaction_id").agg((pl.col("n_feedback").max() > pl.col("n_feedback").min()).alias("g"))
    assert grew.get_column("g").sum() > 100

    full_lake = LocalStore(tmp_path / "full")
    shutil.copytree(store.root, full_lake.root)
    relabel = label_pass(full_lake, options=OPTIONS, force=True)
    assert relabel.mode == "full"
    incremental, full = read_labels(store, columns=COMPARED), read_labels(full_lake, columns=COMPARED)
    assert incremental is not None and full is not None
    assert incremental.height == full.height > 2500
    assert incremental.get_column("interaction_id").is_unique().all()
    joined = incremental.join(full, on="interaction_id", suffix="_full", how="full", coalesce=True)
    for column in COMPARED[1:]:
        differs = joined.filter(pl.col(column).ne_missing(pl.col(f"{column}_full")))
        assert differs.is_empty(), (column, differs.head(5))


def test_passes_follow_the_raw_table_through_compaction_and_vacuum(tmp_path: Path) -> None:
    from flywheel_feedback.services.lake.maintenance import optimize_lake

    events = tmp_path / "events.jsonl"
    simulate_to_file(SimulationConfig(interactions=1500, seed=23, hours=20), events, tmp_path / "truth.parquet")
    lines = events.read_bytes().splitlines(keepends=True)
    thirds = [lines[: len(lines) // 3], lines[len(lines) // 3: 2 * len(lines) // 3], lines[2 * len(lines) // 3:]]
    store = LocalStore(tmp_path / "lake")
    modes = []
    for k, (part, retention) in enumerate(zip(thirds, (None, timedelta(days=7), timedelta(0)), strict=True)):
        path = tmp_path / f"third-{k}.jsonl"
        path.write_bytes(b"".join(part))
        capture_file(path, store)
        if retention is not None:
            # compaction rewrites the files the next pass would read; vacuum at 0 deletes the originals
            optimize_lake(store, retention=retention, force=True)
        modes.append(label_pass(store, options=OPTIONS).mode)
    # compacted but kept: still incremental; compacted and vacuumed: the pass falls back to a full relabel
    assert modes == ["full", "incremental", "full"]
    full_lake = LocalStore(tmp_path / "full")
    shutil.copytree(store.root, full_lake.root)
    label_pass(full_lake, options=OPTIONS, force=True)
    a, b = read_labels(store, columns=COMPARED), read_labels(full_lake, columns=COMPARED)
    assert a is not None and b is not None
    assert a.sort("interaction_id").equals(b.sort("interaction_id"))
