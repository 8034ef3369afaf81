"""The default labeling functions: behavioural signals voting on whether an output was good.

Each one looks at one signal and abstains unless it is telling. Thresholds are module
constants so a deployment can build its own set (`default_registry(task=...)`, or a registry
of its own functions) without editing these.
"""

from __future__ import annotations

import polars as pl

from flywheel_feedback.labeling.features import BAD, GOOD
from flywheel_feedback.labeling.lf import ABSTAIN, LabelingFunction, LFRegistry, labeling_function

HEAVY_EDIT = 0.4
LIGHT_EDIT = 0.15
FAST_RETRY_S = 30.0
REPHRASE = 0.6
LONG_DWELL_MS = 15_000
SHORT_DWELL_MS = 4_000


def _vote(condition: pl.Expr, label: int) -> pl.Expr:
    return pl.when(condition).then(pl.lit(label)).otherwise(pl.lit(ABSTAIN))


@labeling_function(name="edited_heavily")
def edited_heavily(f: pl.DataFrame) -> pl.Expr:
    return _vote(pl.col("edit_ratio") > HEAVY_EDIT, BAD)


@labeling_function(name="edited_lightly")
def edited_lightly(f: pl.DataFrame) -> pl.Expr:
    return _vote(pl.col("edit_ratio") <= LIGHT_EDIT, GOOD)


@labeling_function(name="retried")
def retried(f: pl.DataFrame) -> pl.Expr:
    return _vote(pl.col("n_retries") > 0, BAD)


@labeling_function(name="retried_fast")
def retried_fast(f: pl.DataFrame) -> pl.Expr:
    return _vote(pl.col("time_to_retry_s") < FAST_RETRY_S, BAD)


@labeling_function(name="copied")
def copied(f: pl.DataFrame) -> pl.Expr:
    return _vote(pl.col("copied"), GOOD)


@labeling_function(name="accepted")
def accepted(f: pl.DataFrame) -> pl.Expr:
    return _vote(pl.col("accepted"), GOOD)


@labeling_function(name="rephrased")
def rephrased(f: pl.DataFrame) -> pl.Expr:
    return _vote(pl.col("rephrase_similarity") >= REPHRASE, BAD)


@labeling_function(name="corrected")
def corrected(f: pl.DataFrame) -> pl.Expr:
    return _vote(pl.col("corrected"), BAD)


@labeling_function(name="abandoned")
def abandoned(f: pl.DataFrame) -> pl.Expr:
    return _vote(pl.col("abandoned_explicit"), BAD)


@labeling_function(name="went_silent")
def went_silent(f: pl.DataFrame) -> pl.Expr:
    return _vote(pl.col("abandoned_inferred").fill_null(False), BAD)


@labeling_function(name="dwelled_long")
def dwelled_long(f: pl.DataFrame) -> pl.Expr:
    return _vote(pl.col("dwell_ms") >= LONG_DWELL_MS, GOOD)


@labeling_function(name="dwelled_briefly")
def dwelled_briefly(f: pl.DataFrame) -> pl.Expr:
    return _vote(pl.col("dwell_ms") < SHORT_DWELL_MS, BAD)


@labeling_function(name="explicit_rating")
def explicit_rating(f: pl.DataFrame) -> pl.Expr:
    return pl.col("explicit_label").fill_null(ABSTAIN)


IMPLICIT_LFS: tuple[LabelingFunction, ...] = (
    edited_heavily,
    edited_lightly,
    retried,
    retried_fast,
    copied,
    accepted,
    rephrased,
    corrected,
    abandoned,
    went_silent,
    dwelled_long,
    dwelled_briefly,
)
EXPLICIT_LF_NAMES = ("explicit_rating",)


def default_registry(*, task: str | None = None) -> LFRegistry:
    """Every default function (or those serving `task`); the explicit rating is the last column."""
    registry = LFRegistry((*IMPLICIT_LFS, explicit_rating))
    return registry if task is None else registry.for_task(task)
