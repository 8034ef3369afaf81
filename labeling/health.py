"""Flywheel health figures from the labels table: pure frames in, frames out.

Feedback coverage (explicit vs implicit signals), behaviour rates per model version with an
alarm when a new version's rates move past a threshold (a silent model change shows up in what
users do before anyone rates it), the label distribution, and accuracy against a known truth.
"""

from __future__ import annotations

import polars as pl

RATES: dict[str, pl.Expr] = {
    "copy": pl.col("copied").cast(pl.Float64).mean(),
    "accept": pl.col("accepted").cast(pl.Float64).mean(),
    "edit": (pl.col("n_edits") > 0).cast(pl.Float64).mean(),
    "retry": (pl.col("n_retries") > 0).cast(pl.Float64).mean(),
    "abandon": (pl.col("abandoned_explicit") | pl.col("abandoned_inferred").fill_null(False)).cast(pl.Float64).mean(),
    "rating": (pl.col("explicit_label") >= 0).cast(pl.Float64).mean(),
}
_NEEDED = ("interaction_id", "ts", "app", "model_id", "model_version", "copied", "accepted", "n_edits", "n_retries",
           "abandoned_explicit", "abandoned_inferred", "explicit_label", "n_feedback", "label")


def _check(labels: pl.DataFrame) -> None:
    missing = [c for c in _NEEDED if c not in labels.columns]
    if missing:
        raise ValueError(f"expected the labeler's labels table, missing columns {missing}")


def feedback_coverage(labels: pl.DataFrame) -> pl.DataFrame:
    """How many interactions carry an explicit rating, only implicit signals, or nothing at all."""
    _check(labels)
    kind = (
        pl.when(pl.col("explicit_label") >= 0).then(pl.lit("explicit rating"))
        .when(pl.col("n_feedback") > 0).then(pl.lit("implicit signals only"))
        .when(pl.col("abandoned_inferred").fill_null(False)).then(pl.lit("silence (inferred abandonment)"))
        .otherwise(pl.lit("nothing yet"))
    )
    counts = labels.group_by(kind.alias("feedback")).agg(pl.len().alias("interactions"))
    return counts.with_columns((pl.col("interactions") / labels.height).alias("share")).sort("interactions",
                                                                                             descending=True)


def signal_rates(labels: pl.DataFrame) -> pl.DataFrame:
    """Behaviour rates per model version, versions of one model in the order they went live."""
    _check(labels)
    return (
        labels.group_by("app", "model_id", "model_version")
        .agg(
            pl.len().alias("interactions"),
            pl.col("ts").min().alias("first_seen"),
            *[expr.alias(name) for name, expr in RATES.items()],
            (pl.col("label") == 1).cast(pl.Float64).mean().alias("good_share"),
        )
        .sort("app", "model_id", "first_seen")
    )


def version_alarms(rates: pl.DataFrame, *, threshold: float = 0.08) -> pl.DataFrame:
    """Rows where a version's rate moved more than `threshold` (absolute) from the previous version's."""
    if not 0 < threshold < 1:
        raise ValueError(f"expected a threshold in (0, 1), got {threshold}")
    changes = []
    for name in (*RATES, "good_share"):
        previous = pl.col(name).shift(1).over("app", "model_id")
        changes.append(
            rates.select(
                "app",
                "model_id",
                pl.col("model_version").shift(1).over("app", "model_id").alias("from_version"),
                pl.col("model_version").alias("to_version"),
                pl.lit(name).alias("signal"),
                previous.alias("before"),
                pl.col(name).alias("after"),
            )
        )
    return (
        pl.concat(changes)
        .drop_nulls("before")
        .with_columns((pl.col("after") - pl.col("before")).alias("change"))
        .filter(pl.col("change").abs() > threshold)
        .sort(pl.col("change").abs(), descending=True)
    )


def label_distribution(labels: pl.DataFrame) -> pl.DataFrame:
    _check(labels)
    name = pl.col("label").replace_strict({0: "bad", 1: "good"}, default="no label", return_dtype=pl.String)
    source = pl.col("source") if "source" in labels.columns else pl.lit("weak")
    return labels.group_by(name.alias("label"), source.alias("source")).agg(pl.len().alias("interactions")).sort(
        "label", "source"
    )


def accuracy_against_truth(labels: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Label accuracy per model version against the simulator's hidden truth (`good` per interaction)."""
    _check(labels)
    if not {"interaction_id", "good"} <= set(truth.columns):
        raise ValueError(f"expected truth with interaction_id and good, got {truth.columns}")
    scored = labels.join(truth.select("interaction_id", "good"), on="interaction_id", how="inner").with_columns(
        (pl.col("label") == pl.col("good").cast(pl.Int64)).alias("right")
    )
    per_version = scored.group_by("model_version").agg(
        pl.len().alias("interactions"), pl.col("right").mean().alias("accuracy")
    )
    overall = scored.select(
        pl.lit("all").alias("model_version"), pl.len().alias("interactions"), pl.col("right").mean().alias("accuracy")
    )
    return pl.concat([overall, per_version.sort("model_version")], how="vertical_relaxed")
