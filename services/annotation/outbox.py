"""The annotation outbox: a Delta table (`OUTBOX` in services/lake/tables.py) of what is queued for annotators,
one row per item (interaction_id, queue), with its sent state in the same row.

Writers queue through `enqueue` (the labeler, slice renewal): one MERGE that inserts the items the table does not
hold yet, so an item enters a queue once, ever, and queueing the same items again commits nothing. The push sets
`dataset` and `sent_at` on the items Argilla confirmed (`mark_sent`, one MERGE per batch) only after Argilla
answered: a crash between the two leaves the batch pending, and its next push updates the same records (the
record id is the interaction id), so nothing is lost and nothing is duplicated. Pending = sent_at is null.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

import polars as pl

from flywheel_feedback.services.lake.delta import scan, table_version
from flywheel_feedback.services.lake.merge import insert_new, update_matched
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import OUTBOX

log = logging.getLogger(__name__)

# What a writer hands to `enqueue`; the rest of the row (source, queued_at, sent state) is the outbox's.
ITEM_COLUMNS: Final = ("interaction_id", "queue", "reason", "priority")
KEY: Final = list(OUTBOX.keys)


def enqueue(store: ObjectStore, items: pl.DataFrame, *, source: str, queued_at: datetime | None = None) -> int:
    """Queue `items` (interaction_id, queue, reason, priority) for `source`, in one commit; items already in
    the outbox, sent or not, are left alone. Returns how many were new. An item repeated in `items` keeps its
    highest priority."""
    if not source:
        raise ValueError("expected a source naming who queues these items (e.g. 'renewal:<slice>/v<k>')")
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise ValueError(f"expected outbox items with {list(ITEM_COLUMNS)}; {source} gave {items.columns}, "
                         f"missing {missing}")
    if items.is_empty():
        return 0
    at = queued_at or datetime.now(UTC)
    rows = (
        items.select([pl.col(c).cast(OUTBOX.schema[c]) for c in ITEM_COLUMNS])
        .sort(["priority", "interaction_id"], descending=[True, False], nulls_last=True)
        .unique(subset=KEY, keep="first", maintain_order=True)
        .with_columns(
            pl.lit(source, dtype=OUTBOX.schema["source"]).alias("source"),
            pl.lit(at, dtype=OUTBOX.schema["queued_at"]).alias("queued_at"),
            pl.lit(None, dtype=OUTBOX.schema["dataset"]).alias("dataset"),
            pl.lit(None, dtype=OUTBOX.schema["sent_at"]).alias("sent_at"),
        )
    )
    inserted = insert_new(store, OUTBOX, rows).rows
    log.info("outbox: %d of %d items from %s were new", inserted, rows.height, source)
    return inserted


def read_items(store: ObjectStore) -> pl.DataFrame:
    """Every queued item once, with its source and sent state: by queue, then highest priority first."""
    return _ordered(scan(store, OUTBOX).collect())


def read_sent(store: ObjectStore) -> pl.DataFrame:
    """The items Argilla confirmed (dataset and sent_at set)."""
    return read_items(store).filter(pl.col("sent_at").is_not_null())


def pending_items(
    store: ObjectStore, *, queues: Iterable[str] | None = None, resend: bool = False
) -> pl.DataFrame:
    """Items not yet confirmed by Argilla (all items when `resend`), by queue, then highest priority first."""
    items = scan(store, OUTBOX)
    if queues is not None:
        items = items.filter(pl.col("queue").is_in(list(queues)))
    if not resend:
        items = items.filter(pl.col("sent_at").is_null())
    return _ordered(items.collect())


def queued_pairs(
    store: ObjectStore, *, queues: Iterable[str] | None = None, except_source: str | None = None
) -> pl.DataFrame:
    """(interaction_id, queue) of every item in the outbox (of `queues`; not counting what `except_source`
    queued, for a writer whose rerun must reproduce its own rows)."""
    items = scan(store, OUTBOX)
    if queues is not None:
        items = items.filter(pl.col("queue").is_in(list(queues)))
    if except_source is not None:
        items = items.filter(pl.col("source") != except_source)
    return items.select(KEY).collect()


def mark_sent(store: ObjectStore, *, dataset: str, items: pl.DataFrame, sent_at: datetime) -> int:
    """Record, in one commit, that Argilla confirmed these items (interaction_id, queue) in `dataset`; returns
    how many outbox rows were updated. Marking an item again (a resend) moves its sent_at."""
    if not {"interaction_id", "queue"} <= set(items.columns):
        raise ValueError(f"expected items with interaction_id and queue to mark sent in {dataset}, got "
                         f"{items.columns}")
    marks = items.select(KEY).unique(maintain_order=True).with_columns(
        pl.lit(dataset, dtype=OUTBOX.schema["dataset"]).alias("dataset"),
        pl.lit(sent_at, dtype=OUTBOX.schema["sent_at"]).alias("sent_at"),
    )
    updated = update_matched(store, OUTBOX, marks, columns=["dataset", "sent_at"]).rows
    if updated != marks.height:
        log.warning("marked %d of %d items sent in %s: the others are not in the outbox", updated, marks.height,
                    dataset)
    return updated


def outbox_version(store: ObjectStore) -> int | None:
    """The outbox table's Delta version (None before anything was queued), for lineage."""
    return table_version(store, OUTBOX)


def _ordered(items: pl.DataFrame) -> pl.DataFrame:
    return items.sort(["queue", "priority", "interaction_id"], descending=[False, True, False], nulls_last=True)
