"""Per labeling function statistics over a label matrix: what it votes, how often, and how often it disagrees."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from flywheel_feedback.labeling.lf import ABSTAIN


def lf_summary(
    L: NDArray[np.integer[Any]],
    names: Sequence[str],
    *,
    gold: NDArray[np.integer[Any]] | None = None,
    accuracies: NDArray[np.floating[Any]] | None = None,
) -> pl.DataFrame:
    """One row per labeling function (column of L):

    - polarity: the classes it votes, sorted;
    - coverage: the share of rows it votes on;
    - overlap: the share of rows it votes on where another function votes too;
    - conflict: the share of rows it votes on where another function votes a different class;
    - with `gold` (-1 = unknown): gold_votes, the votes it cast on rows with a gold label, and
      empirical_accuracy, the share of them that are right (null when it cast none);
    - with `accuracies` (e.g. LabelModel.accuracies_): learned_accuracy.
    """
    matrix = _check_matrix(L)
    n, m = matrix.shape
    if len(names) != m:
        raise ValueError(f"expected {m} names, one per column of L, got {len(names)}")
    voted = matrix != ABSTAIN
    votes_in_row = voted.sum(axis=1, keepdims=True)
    # For every cell, how many functions in that row cast the same vote (itself included).
    n_classes = int(matrix.max()) + 1 if voted.any() else 0
    same = np.zeros(matrix.shape, dtype=np.int64)
    for c in range(n_classes):
        is_c = matrix == c
        same += is_c * is_c.sum(axis=1, keepdims=True)
    share = 1.0 / n if n else 0.0
    frame = pl.DataFrame(
        {
            "name": list(names),
            "polarity": [sorted(int(c) for c in np.unique(matrix[voted[:, j], j])) for j in range(m)],
            "coverage": voted.sum(axis=0) * share,
            "overlap": (voted & (votes_in_row > 1)).sum(axis=0) * share,
            "conflict": (voted & (votes_in_row > same)).sum(axis=0) * share,
        },
        schema_overrides={"polarity": pl.List(pl.Int64)},
    )
    if gold is not None:
        gold = _check_gold(gold, n)
        judged = voted & (gold != ABSTAIN)[:, None]
        judged_votes = judged.sum(axis=0)
        right = (judged & (matrix == gold[:, None])).sum(axis=0)
        frame = frame.with_columns(
            pl.Series("gold_votes", judged_votes, dtype=pl.Int64),
            pl.Series(
                "empirical_accuracy",
                [float(r / t) if t else None for r, t in zip(right, judged_votes, strict=True)],
                dtype=pl.Float64,
            ),
        )
    if accuracies is not None:
        learned = np.asarray(accuracies, dtype=np.float64)
        if learned.shape != (m,):
            raise ValueError(f"expected {m} accuracies, one per column of L, got shape {learned.shape}")
        frame = frame.with_columns(pl.Series("learned_accuracy", learned))
    return frame


def _check_matrix(value: object) -> NDArray[np.int64]:
    arr = np.asarray(value)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < ABSTAIN):
        raise ValueError(f"expected a 2-D integer array with values >= -1, got shape {arr.shape}, dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_gold(gold: object, n: int) -> NDArray[np.int64]:
    arr = np.asarray(gold)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < ABSTAIN):
        raise ValueError(
            f"expected gold as a 1-D integer array of {n} labels >= -1 (-1 = unknown), "
            f"got shape {arr.shape}, dtype {arr.dtype}"
        )
    return arr.astype(np.int64, copy=False)
