"""The renewal queue: the annotation outbox's items queued by slice renewals (source "renewal:<slice>/v<k>").

A renewal queues through the outbox's `enqueue`, under a source naming the slice and the version it proposed,
so rerunning a renewal that died before its manifest queues nothing new. An item enters the renewal queue once:
items any other source already queued for renewal are dropped (this renewal's own earlier rows are not "already
queued": a rerun must reproduce them). Rows a rerun no longer proposes stay queued (they may already be in
Argilla).
"""

from __future__ import annotations

from typing import Final

import polars as pl

from flywheel_feedback.services.annotation.outbox import ITEM_COLUMNS, enqueue, queued_pairs, read_items
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import OUTBOX

QUEUE: Final = "renewal"
SOURCE_PREFIX: Final = "renewal:"


def renewal_source(name: str, version: int) -> str:
    """Who queued an item, in the outbox's `source` column, for version `version` of slice `name`."""
    return f"{SOURCE_PREFIX}{name}/v{version}"


def new_items(store: ObjectStore, items: pl.DataFrame, *, source: str) -> pl.DataFrame:
    """`items` (interaction_id, queue, reason, priority) minus what another source already queued for renewal."""
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise ValueError(f"expected outbox items with {list(ITEM_COLUMNS)} from {source}; missing {missing}")
    queued = queued_pairs(store, queues=[QUEUE], except_source=source).select("interaction_id")
    fresh = items.join(queued, on="interaction_id", how="anti")
    return fresh.select(pl.col(c).cast(OUTBOX.schema[c]) for c in ITEM_COLUMNS).sort(
        ["priority", "interaction_id"], descending=[True, False])


def write_items(store: ObjectStore, rows: pl.DataFrame, *, source: str) -> int:
    """Queue the renewal's items (one outbox commit; none if nothing is new); returns how many were new."""
    return enqueue(store, rows, source=source)


def read_renewal_queue(store: ObjectStore) -> pl.DataFrame:
    """Every outbox row a renewal queued, with its source and sent state."""
    return read_items(store).filter(pl.col("source").str.starts_with(SOURCE_PREFIX))
