"""What the labeler reads from the raw event table: the events added since a version, and the events of
given interactions, found by time.

The raw table's files record the range of their events' timestamps (`ts` statistics in the Delta log). An
interaction's signals count from CLOCK_SKEW before it was served to `horizon` after (labeling/features.py),
so its events are in the files whose range meets that interval: a pass reads the files around the
interactions it recomputes, never the whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import numpy as np
import polars as pl

from flywheel_feedback.labeling.features import CLOCK_SKEW, EVENT_COLUMNS
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import RAW_EVENTS

POSITION = ("kafka_topic", "kafka_partition", "kafka_offset")
READ_COLUMNS = (*EVENT_COLUMNS, *POSITION)


def new_events(
    store: ObjectStore,
    *,
    after: int,
    upto: int,
    columns: Sequence[str] = ("interaction_id", "type", "ts"),
    index: pl.DataFrame | None = None,
) -> pl.DataFrame | None:
    """The events the commits after version `after` (up to `upto`) added; None if the log no longer has them, or
    their files are gone (compacted since, and vacuumed: the labeler fell behind the retention)."""
    paths = delta.added_files(store, RAW_EVENTS, after=after, upto=upto)
    if paths is None:
        return None
    index = delta.file_index(store, RAW_EVENTS, version=upto) if index is None else index
    live = set(index.get_column("path").to_list())
    if any(p not in live and not store.exists(f"{RAW_EVENTS.name}/{p}") for p in paths):
        return None
    return delta.read_files(store, RAW_EVENTS, paths, columns=columns)


def events_of(
    store: ObjectStore, served: pl.DataFrame, *, version: int, horizon: timedelta, index: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Every event (deduplicated by event_id, first capture wins) of the interactions in `served`
    (interaction_id, ts = when it was served) within their signal interval, from the table at `version`."""
    if served.is_empty():
        return pl.DataFrame(schema={c: RAW_EVENTS.schema[c] for c in READ_COLUMNS})
    index = delta.file_index(store, RAW_EVENTS, version=version) if index is None else index
    times = served.get_column("ts")
    lows = _micros(times.dt.offset_by(f"-{_us(CLOCK_SKEW)}us"))
    highs = _micros(times.dt.offset_by(f"{_us(horizon)}us"))
    paths = files_meeting(index, lows, highs)
    ids = served.get_column("interaction_id").unique()
    frame = delta.read_files(store, RAW_EVENTS, paths, columns=READ_COLUMNS).filter(
        pl.col("interaction_id").is_in(ids.implode())
    )
    return frame.sort(*POSITION).unique(subset="event_id", keep="first", maintain_order=True)


def files_meeting(index: pl.DataFrame, lows: np.ndarray, highs: np.ndarray) -> list[str]:
    """The files whose [min.ts, max.ts] meets one of the intervals [lows[i], highs[i]] (µs since the epoch);
    a file without statistics always does."""
    if index.is_empty():
        return []
    starts, ends = _union(lows, highs)
    if "min.ts" not in index.columns:
        return index.get_column("path").to_list()
    file_lo = _micros(index.get_column("min.ts"))
    file_hi = _micros(index.get_column("max.ts"))
    # the first interval ending at or after the file's start; the file meets it if that interval starts
    # before the file ends
    at = np.searchsorted(ends, file_lo, side="left")
    meets = (at < len(ends)) & (starts[np.minimum(at, len(ends) - 1)] <= file_hi)
    unknown = index.get_column("min.ts").is_null().to_numpy() | index.get_column("max.ts").is_null().to_numpy()
    picked = index.filter(pl.Series(meets | unknown))
    return picked.get_column("path").to_list()


def _union(lows: np.ndarray, highs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, disjoint intervals covering the given ones."""
    order = np.argsort(lows, kind="stable")
    lo, hi = lows[order], np.maximum.accumulate(highs[order])
    # a new interval starts where a low lies beyond every earlier high
    starts_new = np.ones(len(lo), dtype=bool)
    starts_new[1:] = lo[1:] > hi[:-1]
    group = np.cumsum(starts_new) - 1
    ends = np.zeros(group[-1] + 1, dtype=np.int64)
    np.maximum.at(ends, group, hi)
    return lo[starts_new], ends


def _micros(times: pl.Series) -> np.ndarray:
    return times.dt.cast_time_unit("us").dt.epoch("us").fill_null(0).to_numpy().astype(np.int64)


def _us(span: timedelta) -> int:
    return int(span / timedelta(microseconds=1))
