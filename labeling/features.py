"""Signal features per interaction, from its events.

One row per interaction: what was served (app, task, model version, input text, the whole chat input as
JSON (labeling.conversations), output text)
and what the user did with it: edit ratio (normalised edit distance between the output and
the text the user kept), retries and the time to the first one, copy, accept, explicit
rating, how close the follow-up prompt is to the original (a rephrase), dwell, corrections,
explicit abandonment, and abandonment inferred when nothing positive and no activity at all
follows within a window. Input is the lake's event frame, already deduplicated by event_id,
so a late event joins its interaction on the next pass and a duplicate counts once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
from rapidfuzz import process
from rapidfuzz.distance import Indel, Levenshtein

from flywheel_feedback.labeling.conversations import messages_json_expr

BAD, GOOD = 0, 1


# The event columns features read; `raw` and the Kafka position are never needed here.
EVENT_COLUMNS = (
    "event_id", "type", "ts", "interaction_id", "session_id", "user_id", "app", "task", "model", "input", "output",
    "metadata", "thumbs", "score", "text", "prompt", "dwell_ms",
)
_FEEDBACK_COLUMNS = ("event_id", "interaction_id", "type", "ts", "thumbs", "score", "text", "prompt", "dwell_ms")


# Signals count when they happen from `CLOCK_SKEW` before the answer (a client's clock runs early) to
# `horizon` after it: what a user does with an answer days later says little about the answer, and a bound
# is what lets the incremental labeler find an interaction's events by time.
CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_HORIZON = timedelta(hours=24)


def interaction_features(
    events: pl.DataFrame,
    *,
    abandon_window: timedelta = timedelta(minutes=10),
    now: datetime | None = None,
    horizon: timedelta = DEFAULT_HORIZON,
) -> pl.DataFrame:
    """One row per interaction with its signal features.

    `now` is the watermark for inferring abandonment (default: the newest event time); an
    interaction younger than the window has abandoned_inferred = null (not decided yet). Feedback
    outside [served - CLOCK_SKEW, served + horizon] is ignored.
    """
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"expected the lake's event columns, missing {missing}; got {events.columns}")
    events = events.select(EVENT_COLUMNS)  # carrying wide columns through filters and sorts costs seconds at 1M
    interactions = _interactions(events)
    served = interactions.select("interaction_id", pl.col("ts").alias("served_at"))
    feedback = (
        events.filter(pl.col("type") != "interaction")
        .select(_FEEDBACK_COLUMNS)
        .join(served, on="interaction_id", how="inner")
        .filter(pl.col("ts").is_between(pl.col("served_at") - CLOCK_SKEW, pl.col("served_at") + horizon))
        .drop("served_at")
    )
    if now is None:
        newest = events.get_column("ts").max()
        now = newest if isinstance(newest, datetime) else datetime.now().astimezone()
    frame = interactions
    for part in _aggregate(feedback):
        frame = frame.join(part, on="interaction_id", how="left")
    since_served = (pl.col("first_retry_at") - pl.col("ts")).dt.total_milliseconds() / 1000.0
    active = pl.col("first_activity_at") <= pl.col("ts") + abandon_window
    positive = pl.col("used").fill_null(False) | (pl.col("explicit_label") == GOOD).fill_null(False)
    decided = pl.col("ts") + abandon_window <= pl.lit(now)
    frame = frame.with_columns(
        pl.col("n_feedback").fill_null(0),
        pl.col("n_edits").fill_null(0),
        pl.col("n_retries").fill_null(0),
        pl.col("copied").fill_null(False),
        pl.col("accepted").fill_null(False),
        pl.col("corrected").fill_null(False),
        pl.col("abandoned_explicit").fill_null(False),
        pl.col("explicit_label").fill_null(-1),
        since_served.alias("time_to_retry_s"),
        pl.when(decided).then(~positive & ~active.fill_null(False)).otherwise(None).alias("abandoned_inferred"),
    ).drop("first_retry_at", "first_activity_at", "used")
    frame = _with_edit_ratio(frame)
    return _with_rephrase_similarity(frame)


def _interactions(events: pl.DataFrame) -> pl.DataFrame:
    served = events.filter(pl.col("type") == "interaction")
    last_user_message = (
        pl.col("input")
        .struct.field("messages")
        .list.eval(pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content"))
        .list.last()
    )
    return served.select(
        "interaction_id",
        "ts",
        "app",
        "task",
        "user_id",
        "session_id",
        pl.col("model").struct.field("id").alias("model_id"),
        pl.col("model").struct.field("version").alias("model_version"),
        # the one text of the input that rephrase similarity and topic clusters compare: the prompt, or the
        # last user message of a chat; the whole chat input stays in input_messages
        pl.coalesce(pl.col("input").struct.field("prompt"), last_user_message, pl.lit("")).alias("input_text"),
        messages_json_expr(pl.col("input").struct.field("messages")).alias("input_messages"),
        pl.col("output").fill_null("").alias("output_text"),
        # metadata is the object's JSON text; a regex is several times faster than a JSON path here
        pl.col("metadata").str.extract(r'"segment"\s*:\s*"([^"]*)"').fill_null("unknown").alias("segment"),
    ).unique(subset="interaction_id", keep="first", maintain_order=True)


def _aggregate(feedback: pl.DataFrame) -> list[pl.DataFrame]:
    """Per-interaction aggregates of its feedback, as frames to join on interaction_id.

    Counts and flags need no order; only "the latest edit / correction / rating" does, and those
    are sorted on their own small subsets rather than sorting every feedback event.
    """
    kind = pl.col("type")
    explicit = (
        pl.when(pl.col("thumbs") == "up").then(GOOD)
        .when(pl.col("thumbs") == "down").then(BAD)
        .when(pl.col("score") >= 4).then(GOOD)
        .when(pl.col("score") <= 2).then(BAD)
        .otherwise(None)
    )
    counts = feedback.group_by("interaction_id").agg(
        pl.len().alias("n_feedback"),
        (kind == "edit").sum().alias("n_edits"),
        (kind == "retry").sum().alias("n_retries"),
        pl.col("ts").filter(kind == "retry").min().alias("first_retry_at"),
        (kind == "copy").any().alias("copied"),
        (kind == "accept").any().alias("accepted"),
        (kind == "correction").any().alias("corrected"),
        (kind == "abandon").any().alias("abandoned_explicit"),
        pl.col("dwell_ms").filter(kind == "dwell").max().alias("dwell_ms"),
        # dwell is reported passively when a view closes: it is not the user doing something
        pl.col("ts").filter(kind != "dwell").min().alias("first_activity_at"),
        kind.is_in(["copy", "accept"]).any().alias("used"),
    )

    def latest(of: str, value: pl.Expr, name: str) -> pl.DataFrame:
        return (
            feedback.filter(kind == of)
            .sort("ts", "event_id")  # a total order: the result cannot depend on how events were batched
            .group_by("interaction_id")
            .agg(value.drop_nulls().last().alias(name))
        )

    followups = feedback.filter(kind == "followup").group_by("interaction_id").agg(pl.col("prompt").alias("followups"))
    # (followups only feed a maximum, so their order does not matter)
    return [
        counts,
        latest("edit", pl.col("text"), "edited_text"),
        latest("correction", pl.col("text"), "correction_text"),
        latest("rating", explicit, "explicit_label"),
        followups,
    ]


def _with_edit_ratio(frame: pl.DataFrame) -> pl.DataFrame:
    """Normalised Levenshtein distance between the output and the kept text; null when not edited."""
    edited = frame.get_column("edited_text")
    mask = edited.is_not_null().to_numpy()
    ratio = np.full(frame.height, np.nan)
    if mask.any():
        outputs = frame.get_column("output_text").to_numpy()[mask]
        kept = edited.to_numpy()[mask]
        ratio[mask] = process.cpdist(outputs, kept, scorer=Levenshtein.normalized_distance, workers=-1)
    return frame.with_columns(pl.Series("edit_ratio", ratio).fill_nan(None))


def _with_rephrase_similarity(frame: pl.DataFrame) -> pl.DataFrame:
    """Highest similarity between the original prompt and any follow-up prompt (1 = same words)."""
    pairs = (
        frame.select("interaction_id", "input_text", "followups")
        .explode("followups")
        .drop_nulls("followups")
    )
    if pairs.is_empty():
        return frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("rephrase_similarity")).drop("followups")
    similarity = process.cpdist(
        pairs.get_column("input_text").str.to_lowercase().to_numpy(),
        pairs.get_column("followups").str.to_lowercase().to_numpy(),
        scorer=Indel.normalized_similarity,
        workers=-1,
    )
    best = (
        pairs.select("interaction_id")
        .with_columns(pl.Series("rephrase_similarity", similarity, dtype=pl.Float64))
        .group_by("interaction_id")
        .agg(pl.col("rephrase_similarity").max())
    )
    return frame.drop("followups").join(best, on="interaction_id", how="left")
