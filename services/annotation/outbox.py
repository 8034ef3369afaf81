"""The annotation outbox in the lake: what is queued, what Argilla has confirmed, what is still pending.

An item is (interaction_id, queue). The labeler writes items under OUTBOX_PREFIX; the push writes a "sent"
mark under OUTBOX_SENT_PREFIX for every batch Argilla confirmed, in a file named by the batch's items, so a
batch sent twice rewrites its mark instead of adding one. Pending = items minus marks. A mark is written only
after Argilla answered the batch: a crash between the two leaves the batch pending, and its next push updates
the same records (the record id is the interaction id), so nothing is lost and nothing is duplicated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

import polars as pl

from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import OUTBOX_PREFIX, OUTBOX_SENT_PREFIX, read_prefix, write_table

ITEM_SCHEMA: Final[dict[str, Any]] = {
    "interaction_id": pl.String,
    "queue": pl.String,
    "reason": pl.String,
    "priority": pl.Float64,
}
SENT_SCHEMA: Final[dict[str, Any]] = {
    "interaction_id": pl.String,
    "queue": pl.String,
    "dataset": pl.String,
    "sent_at": pl.Datetime("us", "UTC"),
}


def read_items(store: ObjectStore) -> pl.DataFrame:
    """Every queued item once (an item routed twice keeps its highest priority)."""
    items = read_prefix(store, OUTBOX_PREFIX, schema=ITEM_SCHEMA)
    if items.is_empty():
        return pl.DataFrame(schema=ITEM_SCHEMA)
    return (
        items.select([pl.col(c).cast(t) for c, t in ITEM_SCHEMA.items()])
        .sort(["priority", "interaction_id"], descending=[True, False], nulls_last=True)
        .unique(subset=["interaction_id", "queue"], keep="first", maintain_order=True)
    )


def read_sent(store: ObjectStore) -> pl.DataFrame:
    sent = read_prefix(store, OUTBOX_SENT_PREFIX, schema=SENT_SCHEMA)
    return sent if not sent.is_empty() else pl.DataFrame(schema=SENT_SCHEMA)


def pending_items(
    store: ObjectStore, *, queues: Iterable[str] | None = None, resend: bool = False
) -> pl.DataFrame:
    """Items not yet confirmed by Argilla (all items when `resend`), by queue, then highest priority first."""
    items = read_items(store)
    if queues is not None:
        items = items.filter(pl.col("queue").is_in(list(queues)))
    if not resend:
        items = items.join(read_sent(store).select("interaction_id", "queue"), on=["interaction_id", "queue"],
                           how="anti")
    return items.sort(["queue", "priority", "interaction_id"], descending=[False, True, False], nulls_last=True)


def mark_sent(store: ObjectStore, *, dataset: str, items: pl.DataFrame, sent_at: datetime) -> str:
    """Record that Argilla confirmed these items (interaction_id, queue); returns the mark's key."""
    pairs = sorted(zip(items.get_column("interaction_id").to_list(), items.get_column("queue").to_list(),
                       strict=True))
    digest = hashlib.sha256("\n".join(f"{i}\t{q}" for i, q in pairs).encode()).hexdigest()[:24]
    key = f"{OUTBOX_SENT_PREFIX}/{dataset}/{digest}.parquet"
    frame = pl.DataFrame(
        {
            "interaction_id": [i for i, _ in pairs],
            "queue": [q for _, q in pairs],
            "dataset": [dataset] * len(pairs),
            "sent_at": [sent_at] * len(pairs),
        },
        schema=SENT_SCHEMA,
    )
    write_table(store, key, frame)
    return key
