from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from flywheel_feedback.labeling.diagnostics import lf_summary

# Rows x functions a, b, c.
L = np.array(
    [
        [0, 0, -1],  # a and b agree
        [1, 0, -1],  # a and b disagree
        [-1, -1, -1],  # nobody votes
        [1, -1, 1],  # a and c agree
    ]
)
GOLD = np.array([0, 0, 1, -1])


def test_summary_on_a_hand_computed_example() -> None:
    summary = lf_summary(L, ["a", "b", "c"], gold=GOLD, accuracies=np.array([0.9, 0.8, 0.7]))
    expected = pl.DataFrame(
        {
            "name": ["a", "b", "c"],
            "polarity": [[0, 1], [0], [1]],
            "coverage": [0.75, 0.5, 0.25],
            "overlap": [0.75, 0.5, 0.25],
            "conflict": [0.25, 0.25, 0.0],
            "gold_votes": [2, 2, 0],
            "empirical_accuracy": [0.5, 1.0, None],
            "learned_accuracy": [0.9, 0.8, 0.7],
        },
        schema_overrides={"polarity": pl.List(pl.Int64)},
    )
    assert summary.equals(expected)


def test_summary_without_gold_has_only_the_vote_statistics() -> None:
    summary = lf_summary(L, ["a", "b", "c"])
    assert summary.columns == ["name", "polarity", "coverage", "overlap", "conflict"]


def test_summary_validates_its_inputs() -> None:
    with pytest.raises(ValueError, match="expected 3 names, one per column of L, got 2"):
        lf_summary(L, ["a", "b"])
    with pytest.raises(ValueError, match="expected a 2-D integer array with values >= -1"):
        lf_summary(L.astype(float), ["a", "b", "c"])
    with pytest.raises(ValueError, match="expected gold as a 1-D integer array of 4 labels"):
        lf_summary(L, ["a", "b", "c"], gold=np.array([0, 1]))
    with pytest.raises(ValueError, match="expected 3 accuracies"):
        lf_summary(L, ["a", "b", "c"], accuracies=np.array([0.5]))
