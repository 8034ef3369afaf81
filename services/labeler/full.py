"""A full relabel: every interaction recomputed from the raw table, one chunk of served time at a time.

For a new labeling-function set, a new label model, or a lake the incremental path cannot follow (its log
cleaned up). A chunk is the interactions served in one span of time (`chunk`, a day by default) and the raw
files whose time range meets that span widened by the feedback horizon, so memory is bounded by a chunk, not
the history. The rows of all chunks are written as data files as they are computed and named by one overwrite
commit at the end: until then readers see the old labels, and a relabel that dies leaves them untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from flywheel_feedback.labeling.features import CLOCK_SKEW
from flywheel_feedback.labeling.lf import LFRegistry
from flywheel_feedback.labeling.votes import COUNTS_SCHEMA, count_rows
from flywheel_feedback.services.labeler.raw_reader import POSITION, READ_COLUMNS, files_meeting
from flywheel_feedback.services.labeler.rows import Checkpoint, compute_rows
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import LABELS, RAW_EVENTS

ChunkProgress = Callable[[int, int, str], None]  # (chunks done, chunks in all, what was done)


def relabel_all(
    store: ObjectStore,
    *,
    raw_version: int,
    gold_version: int,
    lf_set: int,
    gold: pl.DataFrame,
    registry: LFRegistry,
    abandon_window: timedelta,
    horizon: timedelta,
    chunk: timedelta,
    on_chunk: ChunkProgress | None = None,
) -> tuple[Checkpoint, pl.DataFrame, int]:
    """Rewrite the labels table from the raw table at `raw_version`; returns the new checkpoint, the vote
    counts of the new rows, and how many rows were written."""
    index = delta.file_index(store, RAW_EVENTS, version=raw_version)
    if index.is_empty():
        raise ValueError(f"the raw table of {store.url} has no data files at version {raw_version}")
    oldest, newest = index.get_column("min.ts").min(), index.get_column("max.ts").max()
    if not isinstance(oldest, datetime) or not isinstance(newest, datetime):
        raise ValueError(f"the raw table of {store.url} records no event times in its files' statistics")
    spans = list(_spans(oldest, newest, chunk))
    actions = []
    counts = [pl.DataFrame(schema=COUNTS_SCHEMA)]
    written = 0
    for done, (start, end) in enumerate(spans, start=1):
        rows = _chunk_rows(store, index, start, end, gold=gold, registry=registry, abandon_window=abandon_window,
                           horizon=horizon, watermark=newest, raw_version=raw_version)
        actions += delta.write_files(store, LABELS, rows)
        counts.append(count_rows(rows))
        written += rows.height
        if on_chunk is not None:
            on_chunk(done, len(spans), f"{start:%Y-%m-%d %H:%M}: {rows.height} interactions")
    checkpoint = Checkpoint(raw=raw_version, gold=gold_version, watermark=newest, lf_set=lf_set)
    delta.commit(store, LABELS, actions, mode="overwrite", transactions=checkpoint.transactions())
    totals = pl.concat(counts).group_by("date", "pattern", "gold_label").agg(pl.col("count").sum())
    return checkpoint, totals.sort("date", "pattern", "gold_label"), written


def _spans(oldest: datetime, newest: datetime, chunk: timedelta) -> Iterator[tuple[datetime, datetime]]:
    start = datetime(oldest.year, oldest.month, oldest.day, tzinfo=UTC)  # chunks start at midnight UTC
    while start <= newest:
        yield start, start + chunk
        start += chunk


def _chunk_rows(
    store: ObjectStore,
    index: pl.DataFrame,
    start: datetime,
    end: datetime,
    *,
    gold: pl.DataFrame,
    registry: LFRegistry,
    abandon_window: timedelta,
    horizon: timedelta,
    watermark: datetime,
    raw_version: int,
) -> pl.DataFrame:
    """The label rows of the interactions served in [start, end)."""
    lo, hi = _us(start - CLOCK_SKEW), _us(end + horizon)
    paths = files_meeting(index, np.array([lo]), np.array([hi]))
    events = (
        delta.read_files(store, RAW_EVENTS, paths, columns=READ_COLUMNS)
        .sort(*POSITION)
        .unique(subset="event_id", keep="first", maintain_order=True)
    )
    in_span = pl.col("ts").is_between(start, end, closed="left")
    served = events.filter((pl.col("type") == "interaction") & in_span).get_column("interaction_id").unique()
    events = events.filter(pl.col("interaction_id").is_in(served.implode()))
    rows = compute_rows(events, gold=gold, registry=registry, abandon_window=abandon_window, horizon=horizon,
                        watermark=watermark, raw_version=raw_version)
    return rows.filter(in_span)


def _us(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
