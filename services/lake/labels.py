"""Reading what the labeler wrote. Every reader of labels outside the labeler goes through here, so the tables'
layout is known in one place.

A label is the current label model's reading of an interaction's votes: `labels/interactions` holds one row per
interaction (features, vote pattern, gold label), `labels/patterns` the model's reading of each pattern (weak
label, confidence, ...), `labels/issues` what cleanlab flagged. `read_labels` joins them into one row per
interaction with `label` (the gold label where annotators gave one, else the weak label, -1 for none) and
`source` (human / weak / none; a row with no label has no confidence). The same join in SQL, for other
engines, is in the README.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date
from typing import Any, Final

import polars as pl

from flywheel_feedback.labeling.slicing import HUMAN, NONE, WEAK
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import (
    ISSUES,
    LABEL_PATTERNS,
    LABELER_STATE_KEY,
    LABELS,
    LF_SUMMARY,
    read_json,
)

# label = -1 with source "none" (and no confidence): no labeling function voted and no annotator answered
NO_LABEL: Final = -1
_FROM_PATTERNS = [c for c in LABEL_PATTERNS.schema.names() if c not in ("pattern", "lf_fingerprint")]


def join_labels(rows: pl.DataFrame, patterns: pl.DataFrame, issues: pl.DataFrame | None) -> pl.DataFrame:
    """Label rows with their pattern's reading, cleanlab's findings (when given), `label` and `source`."""
    frame = rows.join(patterns.select("pattern", *_FROM_PATTERNS), on="pattern", how="left")
    if issues is not None:
        frame = frame.join(issues.select("interaction_id", "suggested_label", "label_quality"),
                           on="interaction_id", how="left").with_columns(
            pl.col("label_quality").is_not_null().alias("is_issue"))
    human = pl.col("gold_label").is_not_null()
    weak = pl.col("weak_label").is_not_null() & (pl.col("weak_label") != NO_LABEL)
    return frame.with_columns(
        pl.when(human).then(pl.col("gold_label")).when(weak).then(pl.col("weak_label")).otherwise(NO_LABEL)
        .alias("label"),
        pl.when(human).then(pl.lit(HUMAN)).when(weak).then(pl.lit(WEAK)).otherwise(pl.lit(NONE)).alias("source"),
        # no label, no confidence: the label model's maximum probability of a pattern no function voted on is
        # only the class prior
        pl.when(human | weak).then(pl.col("confidence")).otherwise(None).alias("confidence"),
        pl.format("raw@{}", pl.col("raw_version")).alias("snapshot"),
    )


def read_labels(
    store: ObjectStore, *, columns: Sequence[str] | None = None, served_since: date | None = None
) -> pl.DataFrame | None:
    """One row per labeled interaction (None while the labeler has not run); `columns` narrows the result
    (names it lacks are skipped); `served_since` keeps the interactions served on that date or later, reading only
    those dates' partitions."""
    if delta.open_table(store, LABELS) is None:
        return None
    labels = delta.scan(store, LABELS)
    if served_since is not None:
        labels = labels.filter(pl.col("date") >= served_since)
    frame = join_labels(
        labels.collect(),
        delta.scan(store, LABEL_PATTERNS).collect(),
        delta.scan(store, ISSUES).collect(),
    )
    return frame if columns is None else frame.select([c for c in columns if c in frame.columns])


def newest_served_date(store: ObjectStore) -> date | None:
    """The newest date an interaction of the labels table was served on (None while it has none): from the
    partition values in the Delta log, no data file read."""
    index = delta.file_index(store, LABELS)
    if "partition.date" not in index.columns or index.is_empty():
        return None
    newest = index.get_column("partition.date").cast(pl.Date).max()
    return newest if isinstance(newest, date) else None


def labels_version(store: ObjectStore) -> int | None:
    """The labels table's Delta version (None before the first pass)."""
    return delta.table_version(store, LABELS)


def read_issues(store: ObjectStore) -> pl.DataFrame | None:
    return None if delta.open_table(store, ISSUES) is None else delta.scan(store, ISSUES).collect()


def read_lf_summary(store: ObjectStore) -> pl.DataFrame | None:
    return None if delta.open_table(store, LF_SUMMARY) is None else delta.scan(store, LF_SUMMARY).collect()


def read_labeler_state(store: ObjectStore) -> dict[str, Any]:
    """The labeler's last finished pass, for people and reports (empty before the first)."""
    return read_json(store, LABELER_STATE_KEY) or {}


def replace_labels(store: ObjectStore, frame: pl.DataFrame) -> None:
    """Overwrite the labels with `frame`, rows as `read_labels` returns them (for seeding a lake in tests and
    benchmarks; the labeler MERGEs). Each distinct reading (weak label, confidence, ...) becomes a pattern."""
    frame = frame.drop("pattern", strict=False)  # read_labels' own pattern ids would not match the new patterns
    present = [c for c in _FROM_PATTERNS if c in frame.columns]
    readings = frame.select(present).unique(maintain_order=True) if present else pl.DataFrame({"_": [0]})
    keys = [
        "seeded:" + hashlib.sha256(repr(sorted(row.items())).encode()).hexdigest()[:12]
        for row in readings.iter_rows(named=True)
    ]
    readings = readings.with_columns(pl.Series("pattern", keys))
    rows = frame.join(readings, on=present, how="left", nulls_equal=True) if present else frame.with_columns(
        pl.lit(keys[0]).alias("pattern"))
    if "ts" in rows.columns and "date" not in rows.columns:
        rows = rows.with_columns(pl.col("ts").dt.date().alias("date"))
    delta.overwrite(store, LABELS, _fill(rows, LABELS.schema))
    delta.overwrite(store, LABEL_PATTERNS, _fill(readings, LABEL_PATTERNS.schema))


def _fill(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    return frame.select(
        pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c) for c, t in schema.items()
    )
