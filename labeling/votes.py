"""Vote patterns and their counts: what the incremental labeler keeps so that the label model never rereads
the history.

A pattern is one interaction's row of the label matrix written as text ("-1,1,-1,0": one code per labeling
function, in registry order, -1 = abstain). Counts are kept per (served date, pattern, gold label): a pass
that recomputes some interactions turns their old and new rows into count changes, and the label model is
fitted from the counts of a window of recent dates. Pure functions over polars frames and numpy arrays.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
from numpy.typing import NDArray

from flywheel_feedback.labeling.lf import ABSTAIN

NO_GOLD = ABSTAIN  # the gold_label of a count row for interactions without a human label
COUNT_KEYS = ("date", "pattern", "gold_label")
COUNTS_SCHEMA = pl.Schema({"date": pl.Date(), "pattern": pl.String(), "gold_label": pl.Int64(), "count": pl.Int64()})


def encode_patterns(L: NDArray[np.integer]) -> pl.Series:
    """One pattern string per row of the label matrix."""
    matrix = np.asarray(L)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-d label matrix, got shape {matrix.shape}")
    columns = pl.DataFrame(matrix.astype(np.int64), schema=[f"c{j}" for j in range(matrix.shape[1])], orient="row")
    return columns.select(pl.concat_str(pl.all().cast(pl.String), separator=",").alias("pattern")).to_series()


def decode_patterns(patterns: pl.Series, n_lfs: int) -> NDArray[np.int64]:
    """The label-matrix rows of pattern strings (the inverse of encode_patterns)."""
    if patterns.is_empty():
        return np.empty((0, n_lfs), dtype=np.int64)
    parts = patterns.str.split(",")
    lengths = parts.list.len().unique().to_list()
    if lengths != [n_lfs]:
        raise ValueError(f"expected patterns of {n_lfs} codes, got lengths {sorted(lengths)}")
    return parts.explode().cast(pl.Int64).to_numpy().reshape(-1, n_lfs)


def count_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Counts of (date, pattern, gold_label) over rows with those columns (gold_label null = no gold)."""
    keyed = rows.select(
        pl.col("date").cast(pl.Date), pl.col("pattern"), pl.col("gold_label").cast(pl.Int64).fill_null(NO_GOLD)
    )
    return keyed.group_by(COUNT_KEYS).agg(pl.len().cast(pl.Int64).alias("count"))


def apply_changes(counts: pl.DataFrame, *, removed: pl.DataFrame, added: pl.DataFrame) -> pl.DataFrame:
    """Counts after some rows were replaced: `removed` are the rows as they were, `added` as they are now."""
    changes = pl.concat([
        counts.select(COUNTS_SCHEMA.names()).cast(COUNTS_SCHEMA),
        count_rows(removed).with_columns(-pl.col("count")),
        count_rows(added),
    ])
    merged = changes.group_by(COUNT_KEYS).agg(pl.col("count").sum()).filter(pl.col("count") != 0)
    if merged.filter(pl.col("count") < 0).height:
        raise ValueError("vote counts went negative: removed rows that were never counted")
    return merged.sort(COUNT_KEYS)


def window(counts: pl.DataFrame, *, since: date) -> pl.DataFrame:
    """The counts of interactions served on or after `since`, summed over dates, in a fixed order."""
    return (
        counts.filter(pl.col("date") >= since)
        .group_by("pattern", "gold_label")
        .agg(pl.col("count").sum())
        .sort("pattern", "gold_label")
    )
