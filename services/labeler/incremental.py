"""An incremental labeler pass: which label rows the data added since the last checkpoint changes, recomputed.

A row changes when (a) its interaction's served event is new, (b) a new feedback event belongs to it, (c) its
abandonment window closed under the advanced watermark (it was labeled open), or (d) its gold label changed.
New events are read from the files the raw table's commits added since the checkpoint (the Delta log says
which). Rows of (b) and (c) are found in the labels table's partitions of the dates they can be on (an event
counts within the feedback horizon of its interaction; labels are partitioned by served date), and every
recomputed interaction's events are read from the raw files whose time range meets its signal interval. Only
(d) looks at the whole labels table, and only when annotators answered since the last pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import polars as pl

from flywheel_feedback.labeling.features import CLOCK_SKEW
from flywheel_feedback.labeling.lf import LFRegistry
from flywheel_feedback.services.labeler.raw_reader import events_of, new_events
from flywheel_feedback.services.labeler.rows import Checkpoint, compute_rows, dates_between, read_rows_on
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import LABELS, RAW_EVENTS


@dataclass(frozen=True)
class Changes:
    rows: pl.DataFrame  # the changed label rows as they are now (LABELS' columns)
    before: pl.DataFrame  # the same interactions' rows as they were (those that had one)
    watermark: datetime
    new_events: int


def changed_rows(
    store: ObjectStore,
    checkpoint: Checkpoint,
    *,
    raw_version: int,
    gold_version: int,
    gold: pl.DataFrame,
    registry: LFRegistry,
    abandon_window: timedelta,
    horizon: timedelta,
) -> Changes | None:
    """The label rows that the raw commits after the checkpoint (and new gold) change; None when the log no
    longer holds those commits (then only a full relabel can catch up)."""
    index = delta.file_index(store, RAW_EVENTS, version=raw_version)  # read once: new files, then the lookup
    new = new_events(store, after=checkpoint.raw, upto=raw_version, index=index)
    if new is None:
        return None
    newest = new.get_column("ts").max()
    watermark = max(checkpoint.watermark, newest) if isinstance(newest, datetime) else checkpoint.watermark
    served_new = new.filter(pl.col("type") == "interaction").group_by("interaction_id").agg(pl.col("ts").min())
    feedback = new.filter(pl.col("type") != "interaction").select("interaction_id", "ts")

    existing = read_rows_on(store, _dates_to_look_at(served_new, feedback, checkpoint.watermark, watermark,
                                                     abandon_window=abandon_window, horizon=horizon))
    touched_ids = feedback.get_column("interaction_id").unique().implode()
    # an open row whose abandonment window has closed now is decided on this pass
    closing = pl.col("abandoned_inferred").is_null() & (pl.col("ts") + abandon_window <= watermark)
    revisit = existing.filter(pl.col("interaction_id").is_in(touched_ids) | closing).select("interaction_id", "ts")
    served = pl.concat([served_new, revisit]).group_by("interaction_id").agg(pl.col("ts").min())
    events = events_of(store, served, version=raw_version, horizon=horizon, index=index)
    rows = compute_rows(events, gold=gold, registry=registry, abandon_window=abandon_window, horizon=horizon,
                        watermark=watermark, raw_version=raw_version)

    recomputed = rows.get_column("interaction_id").implode()
    before = existing.filter(pl.col("interaction_id").is_in(recomputed))
    missing = rows.filter(~pl.col("interaction_id").is_in(before.get_column("interaction_id").implode()))
    if missing.height:  # served on a date not looked at (a producer resent an old interaction): look there too
        before = pl.concat([before, read_rows_on(store, set(missing.get_column("date").to_list())).filter(
            pl.col("interaction_id").is_in(missing.get_column("interaction_id").implode()))])
    if gold_version != checkpoint.gold:
        relabeled, was = _gold_changes(store, gold, exclude=rows.get_column("interaction_id"))
        rows, before = pl.concat([rows, relabeled]), pl.concat([before, was])
    return Changes(rows=rows, before=before, watermark=watermark, new_events=new.height)


def _dates_to_look_at(
    served: pl.DataFrame,
    feedback: pl.DataFrame,
    watermark_before: datetime,
    watermark: datetime,
    *,
    abandon_window: timedelta,
    horizon: timedelta,
) -> set[date]:
    """Served dates whose label rows a pass may change: the new interactions' dates, the dates a new feedback
    event's interaction can have been served on, and the dates of rows whose abandonment window closes now."""
    dates = set(served.get_column("ts").dt.date().to_list())
    if feedback.height:
        spans = feedback.select(
            (pl.col("ts") - horizon - CLOCK_SKEW).dt.date().alias("first"),
            (pl.col("ts") + CLOCK_SKEW).dt.date().alias("last"),
        ).unique()
        for first, last in spans.iter_rows():
            dates.update(dates_between(first, last))
    dates.update(dates_between((watermark_before - abandon_window).date(), (watermark - abandon_window).date()))
    return dates


def _gold_changes(store: ObjectStore, gold: pl.DataFrame, *, exclude: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows whose gold label or annotator count differs from the current gold, as they will be and as they were.

    Annotated interactions can be on any date, so this reads the labels table's ids (one column) throughout;
    it runs only on passes after annotators answered."""
    ids = gold.get_column("interaction_id").implode()
    scanned = delta.scan(store, LABELS).filter(pl.col("interaction_id").is_in(ids)).collect()
    was = scanned.filter(~pl.col("interaction_id").is_in(exclude.implode()))
    columns = ["gold_label", "annotators", "gold_agreement"]
    now = was.drop(columns).join(gold, on="interaction_id", how="left")
    changed = (
        now.select("interaction_id", *columns)
        .join(was.select("interaction_id", *columns), on="interaction_id", suffix="_was")
        .filter(pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_was")) for c in columns))
        .get_column("interaction_id")
        .implode()
    )
    return (
        now.filter(pl.col("interaction_id").is_in(changed)).select(LABELS.schema.names()).cast(LABELS.schema),
        was.filter(pl.col("interaction_id").is_in(changed)),
    )
