"""Reading the lake into behaviour fingerprints, alarms and migration diffs (the pure work is in labeling/)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import polars as pl

from flywheel_feedback.labeling.changes import Alarm, DetectorConfig, detect
from flywheel_feedback.labeling.fingerprints import SERIES_KEYS, interaction_features, windowed
from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.labels import newest_served_date, read_labels
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.models.metrics import ModelChangeMetrics
from flywheel_feedback.services.models.webhook import post_alarms
from flywheel_feedback.services.settings import ModelSettings

_LABEL_COLUMNS = ("interaction_id", "ts", "app", "task", "model_id", "model_version", "output_text", "copied",
                  "accepted", "n_edits", "n_retries", "abandoned_explicit", "abandoned_inferred", "label")
# a migration is a change of the series without the version: the model's line across its versions
MODEL_LINE_KEYS = tuple(k for k in SERIES_KEYS if k != "model_version")


def lake_interactions(store: ObjectStore, *, days: float | None = None) -> pl.DataFrame | None:
    """One row per labeled interaction with its output, signals, weak label, provider and latency (None before
    the labeler has run). The output is the labels' (PII-masked) text. With `days`, only the interactions served
    in the last `days` before the newest one, read from those dates' partitions of the labels and raw tables
    alone: a periodic check costs what its window holds, not the whole history."""
    since_date = None
    if days is not None:
        newest = newest_served_date(store)
        if newest is None:
            return None
        since_date = newest - timedelta(days=math.ceil(days) + 1)  # whole days; window_of trims to the hour
    labels = read_labels(store, columns=_LABEL_COLUMNS, served_since=since_date)
    if labels is None or labels.is_empty():
        return None
    served = read_events(store, types=["interaction"], columns=["type", "interaction_id", "model", "latency_ms"],
                         since_date=since_date)
    served = served.select(
        "interaction_id", pl.col("model").struct.field("provider").fill_null("unknown").alias("provider"),
        "latency_ms",
    ).unique("interaction_id", keep="first")
    joined = labels.rename({"output_text": "output"}).join(served, on="interaction_id", how="left").with_columns(
        pl.col("provider").fill_null("unknown")
    )
    return window_of(joined, days)


def model_alarms(
    interactions: pl.DataFrame, config: DetectorConfig, *, since: datetime | None = None
) -> tuple[pl.DataFrame, list[Alarm]]:
    """The hourly (config.window) series per model version, and the alarms on them and on each model's line
    across versions (a migration), newest last; `since` keeps alarms raised after it."""
    features = interaction_features(interactions)
    series = windowed(features, config.window, SERIES_KEYS)
    alarms = detect(series, config, SERIES_KEYS)
    lines = windowed(features, config.window, MODEL_LINE_KEYS)
    silent = {(a.series["model_id"], a.measure, a.alarmed_at) for a in alarms}
    for alarm in detect(lines, config, MODEL_LINE_KEYS):
        if (alarm.series["model_id"], alarm.measure, alarm.alarmed_at) not in silent:
            alarms.append(alarm)
    if since is not None:
        alarms = [a for a in alarms if a.alarmed_at > since]
    return series, sorted(alarms, key=lambda a: a.alarmed_at)


def window_of(interactions: pl.DataFrame, days: float | None) -> pl.DataFrame:
    if days is None or interactions.is_empty():
        return interactions
    newest = interactions["ts"].max()
    assert isinstance(newest, datetime)
    return interactions.filter(pl.col("ts") > newest - timedelta(days=days))


def check_models(store: ObjectStore, settings: ModelSettings, metrics: ModelChangeMetrics) -> list[Alarm]:
    """One pass of `serve`'s model stage: alarms over the look-back window onto the metrics, the new ones to the
    webhook. Returns the new alarms."""
    interactions = lake_interactions(store, days=settings.lookback_days)
    if interactions is None:
        return []
    _, alarms = model_alarms(interactions, settings.detector())
    new = metrics.show(alarms)
    if settings.webhook_url is not None:
        post_alarms(settings.webhook_url.get_secret_value(), new, timeout_s=settings.webhook_timeout_s)
    return new
