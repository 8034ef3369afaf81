from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pytest

from flywheel_feedback.labeling.lf import ABSTAIN, LabelingFunction, LFRegistry, labeling_function

FRAME = pl.DataFrame({"edit_ratio": [0.0, 0.5, 0.9, None], "retries": [0, 2, 0, 1]})


@labeling_function(name="heavy_edit", tasks=["helpfulness"])
def heavy_edit(frame: pl.DataFrame) -> pl.Expr:
    return pl.when(pl.col("edit_ratio") > 0.8).then(0).otherwise(ABSTAIN)


@labeling_function(tasks=["helpfulness", "safety"])
def retried(frame: pl.DataFrame) -> pl.Series:
    return pl.Series([0 if r > 0 else None for r in frame["retries"]])  # a Series, with nulls for abstain


@labeling_function(name="untouched")
def untouched(frame: pl.DataFrame) -> pl.Expr:
    return pl.when(pl.col("edit_ratio") == 0).then(1).otherwise(None)


@labeling_function(name="boom")
def boom(frame: pl.DataFrame) -> pl.Expr:
    raise RuntimeError("feature store unavailable")


@labeling_function(name="missing_column")
def missing_column(frame: pl.DataFrame) -> pl.Expr:
    return pl.col("no_such_feature").cast(pl.Int8)


@labeling_function(name="float_votes")
def float_votes(frame: pl.DataFrame) -> pl.Expr:
    return pl.col("edit_ratio")


def test_apply_builds_the_label_matrix_from_exprs_and_series() -> None:
    registry = LFRegistry([heavy_edit, retried, untouched])
    votes, names = registry.apply(FRAME)
    assert names == ("heavy_edit", "retried", "untouched")
    assert votes.dtype == np.int8
    np.testing.assert_array_equal(votes, [[-1, -1, 1], [-1, 0, -1], [0, -1, -1], [-1, 0, -1]])
    assert registry.failures == {}


def test_decorator_defaults_the_name_to_the_function_name() -> None:
    assert isinstance(retried, LabelingFunction)
    assert retried.name == "retried"
    assert retried.tasks == frozenset({"helpfulness", "safety"})
    assert untouched.tasks is None


def test_duplicate_name_fails_and_names_the_duplicate() -> None:
    other = labeling_function(name="heavy_edit")(lambda frame: pl.lit(1))
    with pytest.raises(ValueError, match=r"duplicate labeling function name.*heavy_edit"):
        LFRegistry([heavy_edit, retried, other])


def test_a_raising_function_abstains_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    registry = LFRegistry([heavy_edit, boom, missing_column, float_votes])
    with caplog.at_level(logging.WARNING, logger="flywheel_feedback.labeling.lf"):
        votes, _ = registry.apply(FRAME)
        registry.apply(FRAME)
    np.testing.assert_array_equal(votes[:, 0], [-1, -1, 0, -1])  # the healthy function still votes
    assert (votes[:, 1:] == ABSTAIN).all()
    assert registry.failures == {"boom": 2, "missing_column": 2, "float_votes": 2}
    assert "'boom'" in caplog.text and "feature store unavailable" in caplog.text


def test_a_literal_vote_is_broadcast_to_every_row() -> None:
    always = labeling_function(name="always_good")(lambda frame: pl.lit(1))
    votes, _ = LFRegistry([always]).apply(FRAME)
    np.testing.assert_array_equal(votes[:, 0], [1, 1, 1, 1])


def test_for_task_selects_the_functions_that_serve_it() -> None:
    registry = LFRegistry([heavy_edit, retried, untouched])
    assert registry.for_task("safety").names == ("retried", "untouched")
    assert registry.for_task("helpfulness").names == ("heavy_edit", "retried", "untouched")
    assert registry.for_task("tone").names == ("untouched",)


def test_fingerprint_is_stable_and_follows_the_set() -> None:
    registry = LFRegistry([heavy_edit, retried])
    assert registry.fingerprint == LFRegistry([heavy_edit, retried]).fingerprint
    assert registry.fingerprint != LFRegistry([heavy_edit]).fingerprint
    assert registry.fingerprint != LFRegistry([heavy_edit, retried, untouched]).fingerprint

    @labeling_function(name="retried", tasks=["helpfulness", "safety"])
    def retried_changed(frame: pl.DataFrame) -> pl.Expr:  # same name, new code
        return pl.when(pl.col("retries") > 1).then(0).otherwise(ABSTAIN)

    assert registry.fingerprint != LFRegistry([heavy_edit, retried_changed]).fingerprint


def test_registry_rejects_plain_functions() -> None:
    with pytest.raises(TypeError, match="LabelingFunction"):
        LFRegistry([lambda frame: pl.lit(0)])  # type: ignore[list-item]
