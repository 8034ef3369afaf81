"""Labeled traffic as slices and exports read it: the labels table, annotators' corrections, lineage.

One row per labeled interaction with the columns slices and exports use; the input text is masked
here already (clusters are fitted on it and their names come from its words). Lineage says what the
rows came from: the labeler's lake snapshot(s), labeling-function set and label-model version(s), the
labeling functions by name, the Delta versions of the tables read (raw events, labels, gold) and the Kafka
offsets the raw events table held at its version. Labels are read only through `services/lake/labels.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import polars as pl

from flywheel_feedback.labeling.conversations import mask_messages
from flywheel_feedback.labeling.records import mask_distinct
from flywheel_feedback.services.annotation.gold import gold_version, read_gold_responses
from flywheel_feedback.services.errors import FlywheelError
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.labels import labels_version, read_labeler_state, read_labels, read_lf_summary
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import RAW_EVENTS

# labels-table column -> type it is read as (older tables may lack some: they come back null)
LABEL_COLUMNS: Final[dict[str, pl.DataType]] = {
    "interaction_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "app": pl.String(),
    "task": pl.String(),
    "segment": pl.String(),
    "model_id": pl.String(),
    "model_version": pl.String(),
    "input_text": pl.String(),
    "input_messages": pl.String(),
    "output_text": pl.String(),
    "edited_text": pl.String(),
    "correction_text": pl.String(),
    "label": pl.Int64(),
    "weak_label": pl.Int64(),
    "confidence": pl.Float64(),
    "covered": pl.Boolean(),
    "source": pl.String(),
    "annotators": pl.UInt32(),
    "edit_ratio": pl.Float64(),
    "n_retries": pl.UInt32(),
    "copied": pl.Boolean(),
    "accepted": pl.Boolean(),
    "corrected": pl.Boolean(),
    "explicit_label": pl.Int32(),
    "label_model_version": pl.String(),
    "lf_fingerprint": pl.String(),
    "snapshot": pl.String(),
}


class NoTrafficError(FlywheelError, LookupError):
    """The lake has no labeled interactions (for this filter)."""


@dataclass(frozen=True)
class Traffic:
    frame: pl.DataFrame  # one row per labeled interaction; input_text masked; `source` renamed label_source
    watermark: datetime  # the newest interaction considered (as_of, when given)
    lineage: dict[str, Any] = field(default_factory=dict)


def read_traffic(store: ObjectStore, *, tasks: Sequence[str] = (), as_of: datetime | None = None) -> Traffic:
    """The labeled interactions of `tasks` (all when empty) served at or before `as_of`."""
    if as_of is not None and as_of.tzinfo is None:
        raise ValueError(f"expected as_of with a time zone, got {as_of!r}")
    # Delta versions before the reads (the rows are at least this new)
    read_at = {"labels": labels_version(store), "gold": gold_version(store)}
    labels = read_labels(store, columns=list(LABEL_COLUMNS))
    if labels is None:
        raise NoTrafficError(f"the lake at {store.url} has no labels table: run `flywheel label` first")
    frame = labels.select(
        pl.col(c).cast(t) if c in labels.columns else pl.lit(None, dtype=t).alias(c) for c, t in LABEL_COLUMNS.items()
    ).rename({"source": "label_source"})
    if tasks:
        frame = frame.filter(pl.col("task").is_in(list(tasks)))
    if as_of is not None:
        frame = frame.filter(pl.col("ts") <= as_of)
    if frame.is_empty():
        raise NoTrafficError(f"no labeled interactions in {store.url} for tasks {list(tasks) or 'any'}"
                             + (f" up to {as_of.isoformat()}" if as_of else ""))
    frame = frame.join(_annotator_corrections(store), on="interaction_id", how="left")
    frame = mask_distinct(frame, ["input_text"]).with_columns(mask_messages(frame.get_column("input_messages")))
    newest = frame.get_column("ts").max()
    watermark = as_of if as_of is not None else newest
    if not isinstance(watermark, datetime):
        raise NoTrafficError(f"the labeled interactions in {store.url} have no timestamps")
    return Traffic(frame=frame, watermark=watermark, lineage=_lineage(store, frame, read_at=read_at))


def _annotator_corrections(store: ObjectStore) -> pl.DataFrame:
    """The latest correction an annotator wrote per interaction (a reference output)."""
    gold = read_gold_responses(store)
    if gold.is_empty():
        return pl.DataFrame(schema={"interaction_id": pl.String, "annotator_correction": pl.String})
    return (
        gold.filter(pl.col("correction").is_not_null() & (pl.col("correction").str.strip_chars() != ""))
        .sort("submitted_at", "response_id")
        .group_by("interaction_id")
        .agg(pl.col("correction").last().alias("annotator_correction"))
    )


def raw_event_ranges(store: ObjectStore) -> dict[str, Any]:
    """The raw table's Delta version, and per Kafka topic and partition the offsets it held then."""
    version = delta.table_version(store, RAW_EVENTS)
    if version is None:
        return {"table_version": None, "partitions": []}
    ranges = (
        delta.scan(store, RAW_EVENTS, version=version)
        .group_by(pl.col("kafka_topic").alias("topic"), pl.col("kafka_partition").alias("partition"))
        .agg(pl.col("kafka_offset").min().alias("first_offset"), pl.col("kafka_offset").max().alias("last_offset"),
             pl.len().alias("events"))
        .sort("topic", "partition")
        .collect()
    )
    return {"table_version": version, "partitions": ranges.to_dicts()}


def _lineage(store: ObjectStore, frame: pl.DataFrame, *, read_at: dict[str, int | None]) -> dict[str, Any]:
    summary = read_lf_summary(store)
    state = read_labeler_state(store)
    ranges = raw_event_ranges(store)
    return {
        "lake": store.url,
        "lake_snapshots": sorted(frame.get_column("snapshot").drop_nulls().unique().to_list()),
        "labeler_state": {
            k: state.get(k) for k in ("snapshot", "finished_at", "lf_fingerprint", "label_model_version")
        },
        "event_ranges": ranges,
        # the Delta version of each table read (None: not a Delta table yet)
        "tables": {"raw_events": ranges["table_version"], **read_at},
        "lf_fingerprints": sorted(frame.get_column("lf_fingerprint").drop_nulls().unique().to_list()),
        "label_model_versions": sorted(frame.get_column("label_model_version").drop_nulls().unique().to_list()),
        "labeling_functions": [] if summary is None else summary.get_column("name").to_list(),
    }


def describe_rows(rows: pl.DataFrame) -> dict[str, Any]:
    """What a manifest says about the rows it holds: their time range, model versions, labeling."""
    def counts(*columns: str) -> dict[str, int]:
        grouped = rows.group_by(pl.concat_str([pl.col(c).cast(pl.String).fill_null("null") for c in columns],
                                              separator="@").alias("k")).agg(pl.len())
        return dict(sorted((str(k), int(n)) for k, n in grouped.iter_rows()))

    first, last = (rows.get_column("ts").min(), rows.get_column("ts").max()) if rows.height else (None, None)
    return {
        "interactions": {"first_ts": _iso(first), "last_ts": _iso(last)},
        "model_versions": counts("model_id", "model_version") if rows.height else {},
    }


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None
