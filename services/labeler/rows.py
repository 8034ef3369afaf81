"""Label rows: computing them from events, reading them back by date, and the checkpoint their commits carry.

The rows' free text (TEXT_COLUMNS, and each message of a chat input) is masked (`labeling.pii`, the bulk path)
once the signal features are computed from the text as it was sent: the labels table is read by people,
dashboards and other engines, so it holds no e-mail address, phone number, card number or key.
The raw events keep what was sent.

A labels commit records what it was computed from as Delta application transactions: the raw table's version,
the gold table's version, the event-time watermark (µs since the epoch) and the labeling-function set. A crash
before the commit leaves the old checkpoint, so the next pass recomputes the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl

from flywheel_feedback.labeling.conversations import mask_messages
from flywheel_feedback.labeling.features import EVENT_COLUMNS, interaction_features
from flywheel_feedback.labeling.lf import LFRegistry
from flywheel_feedback.labeling.pii import mask_columns
from flywheel_feedback.labeling.votes import encode_patterns
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import LABELS

APP_RAW = "labeler/raw"
APP_GOLD = "labeler/gold"
APP_WATERMARK = "labeler/watermark"
APP_LF_SET = "labeler/lf_set"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TEXT_COLUMNS = ("input_text", "output_text", "edited_text", "correction_text")


@dataclass(frozen=True)
class Checkpoint:
    raw: int  # the raw table's version the labels were computed from
    gold: int  # the gold table's version (-1: none)
    watermark: datetime  # the newest event time seen
    lf_set: int  # the labeling-function set's fingerprint, as a number

    def transactions(self) -> dict[str, int]:
        return {
            APP_RAW: self.raw,
            APP_GOLD: self.gold,
            APP_WATERMARK: int((self.watermark - _EPOCH) / timedelta(microseconds=1)),
            APP_LF_SET: self.lf_set,
        }


def lf_set_number(registry: LFRegistry) -> int:
    return int(registry.fingerprint[:15], 16)


def read_checkpoint(store: ObjectStore) -> Checkpoint | None:
    """What the labels table was last computed from (None before the first pass)."""
    found = delta.transaction_versions(store, LABELS, [APP_RAW, APP_GOLD, APP_WATERMARK, APP_LF_SET])
    if APP_RAW not in found or APP_WATERMARK not in found:
        return None
    return Checkpoint(
        raw=found[APP_RAW],
        gold=found.get(APP_GOLD, -1),
        watermark=_EPOCH + timedelta(microseconds=found[APP_WATERMARK]),
        lf_set=found.get(APP_LF_SET, -1),
    )


def compute_rows(
    events: pl.DataFrame,
    *,
    gold: pl.DataFrame,
    registry: LFRegistry,
    abandon_window: timedelta,
    horizon: timedelta,
    watermark: datetime,
    raw_version: int,
) -> pl.DataFrame:
    """Label rows (LABELS' columns) for the interactions whose events these are (all of each one's events)."""
    if events.filter(pl.col("type") == "interaction").is_empty():
        return pl.DataFrame(schema=LABELS.schema)
    features = interaction_features(
        events.select(EVENT_COLUMNS), abandon_window=abandon_window, now=watermark, horizon=horizon
    )
    L, _ = registry.apply(features)
    rows = features.join(gold, on="interaction_id", how="left").with_columns(
        encode_patterns(L),
        pl.lit(registry.fingerprint).alias("lf_fingerprint"),
        pl.lit(raw_version, dtype=pl.Int64).alias("raw_version"),
        pl.col("ts").dt.date().alias("date"),
    )
    masked = mask_columns(rows.select(LABELS.schema.names()).cast(LABELS.schema), TEXT_COLUMNS, engine="fast")
    return masked.with_columns(mask_messages(masked.get_column("input_messages")))


def read_rows_on(store: ObjectStore, dates: Iterable[date], *, columns: Iterable[str] | None = None) -> pl.DataFrame:
    """The label rows of interactions served on these dates."""
    wanted = set(dates)
    index = delta.file_index(store, LABELS)
    names = list(LABELS.schema.names() if columns is None else columns)
    if index.is_empty() or not wanted:
        return pl.DataFrame(schema={c: LABELS.schema[c] for c in names})
    paths = index.filter(pl.col("partition.date").is_in(sorted(wanted))).get_column("path").to_list()
    return delta.read_files(store, LABELS, paths, columns=names)


def read_recent_rows(store: ObjectStore, *, rows: int, columns: Iterable[str] | None = None) -> pl.DataFrame:
    """The `rows` most recently served interactions' label rows, reading only the newest dates' files."""
    index = delta.file_index(store, LABELS)
    names = list(LABELS.schema.names() if columns is None else columns)
    if index.is_empty():
        return pl.DataFrame(schema={c: LABELS.schema[c] for c in names})
    per_date = (
        index.group_by("partition.date").agg(pl.col("num_records").sum())
        .sort("partition.date", descending=True)
        .with_columns(pl.col("num_records").cum_sum().shift(1, fill_value=0).alias("before"))
        .filter(pl.col("before") < rows)
    )
    chosen = per_date.get_column("partition.date").to_list()
    paths = index.filter(pl.col("partition.date").is_in(chosen)).get_column("path").to_list()
    frame = delta.read_files(store, LABELS, paths, columns=list(dict.fromkeys([*names, "ts", "interaction_id"])))
    return frame.sort("ts", "interaction_id", descending=True).head(rows).select(names)


def dates_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=d) for d in range((last - first).days + 1)] if first <= last else []
