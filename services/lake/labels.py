"""Reading what the labeler wrote: labels (one row per interaction), label issues, the labeling-function summary
and the labeler's checkpoint. Every reader of labels outside the labeler goes through here, so the tables'
layout is known in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import (
    ISSUES_KEY,
    LABELER_STATE_KEY,
    LABELS_KEY,
    LF_SUMMARY_KEY,
    read_json,
    read_table,
)


def read_labels(store: ObjectStore, *, columns: Sequence[str] | None = None) -> pl.DataFrame | None:
    """One row per labeled interaction (None while the labeler has not run); `columns` narrows the read
    (names the table lacks are skipped)."""
    labels = read_table(store, LABELS_KEY)
    if labels is None or columns is None:
        return labels
    return labels.select([c for c in columns if c in labels.columns])


def read_issues(store: ObjectStore) -> pl.DataFrame | None:
    return read_table(store, ISSUES_KEY)


def read_lf_summary(store: ObjectStore) -> pl.DataFrame | None:
    return read_table(store, LF_SUMMARY_KEY)


def read_labeler_state(store: ObjectStore) -> dict[str, Any]:
    """The labeler's checkpoint (empty before its first pass)."""
    return read_json(store, LABELER_STATE_KEY) or {}


def replace_labels(store: ObjectStore, frame: pl.DataFrame) -> None:
    """Overwrite the labels with `frame` (for seeding a lake in tests and benchmarks; the labeler MERGEs)."""
    from flywheel_feedback.services.lake.tables import write_table

    write_table(store, LABELS_KEY, frame)


def labels_version(store: ObjectStore) -> int | None:
    """The labels table's Delta version (None while it is not a Delta table: today it is one Parquet file)."""
    return None
