"""The renewal queue: rows with queue="renewal" in the annotation outbox (outbox/items/).

A renewal writes one file named by the slice and the version it proposed, so rerunning it rewrites the
same file. An item enters the renewal queue once: items any other file already queued for renewal are
dropped (this file's own earlier rows are not "already queued": a rerun must reproduce them).
"""

from __future__ import annotations

from typing import Final

import polars as pl

from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import OUTBOX_PREFIX, read_table, write_table

QUEUE: Final = "renewal"
OUTBOX_COLUMNS: Final[dict[str, pl.DataType]] = {
    "interaction_id": pl.String(),
    "queue": pl.String(),
    "reason": pl.String(),
    "priority": pl.Float64(),
    "snapshot": pl.String(),
}


def renewal_key(name: str, version: int) -> str:
    return f"{OUTBOX_PREFIX}/renewal-{name}-v{version}.parquet"


def already_queued(store: ObjectStore, *, except_key: str) -> pl.DataFrame:
    """interaction_id of every item some other outbox file put in the renewal queue."""
    frames = []
    for key in store.list(OUTBOX_PREFIX):
        if key == except_key or not key.endswith(".parquet"):
            continue
        table = read_table(store, key)
        if table is not None and {"interaction_id", "queue"} <= set(table.columns):
            frames.append(table.filter(pl.col("queue") == QUEUE).select(pl.col("interaction_id").cast(pl.String)))
    if not frames:
        return pl.DataFrame(schema={"interaction_id": pl.String})
    return pl.concat(frames).unique()


def new_items(store: ObjectStore, items: pl.DataFrame, *, key: str, snapshot: str) -> pl.DataFrame:
    """`items` (interaction_id, queue, reason, priority) minus what is already queued, as outbox rows."""
    missing = [c for c in ("interaction_id", "queue", "reason", "priority") if c not in items.columns]
    if missing:
        raise ValueError(f"expected outbox items with interaction_id, queue, reason, priority; missing {missing}")
    fresh = items.join(already_queued(store, except_key=key), on="interaction_id", how="anti")
    return fresh.with_columns(pl.lit(snapshot).alias("snapshot")).select(
        pl.col(c).cast(t) for c, t in OUTBOX_COLUMNS.items()
    )


def write_items(store: ObjectStore, rows: pl.DataFrame, *, key: str) -> None:
    """Write the renewal file (an empty result removes a stale file from an earlier attempt)."""
    if rows.is_empty():
        if store.exists(key):
            store.delete(key)
        return
    write_table(store, key, rows.sort(["priority", "interaction_id"], descending=[True, False]))


def read_renewal_queue(store: ObjectStore) -> pl.DataFrame:
    """Every renewal-queue row in the outbox."""
    frames = []
    for key in store.list(OUTBOX_PREFIX):
        table = read_table(store, key) if key.endswith(".parquet") else None
        if table is not None and "queue" in table.columns:
            frames.append(table.filter(pl.col("queue") == QUEUE).select(
                pl.col(c).cast(t) if c in table.columns else pl.lit(None, dtype=t).alias(c)
                for c, t in OUTBOX_COLUMNS.items()
            ))
    return pl.concat(frames) if frames else pl.DataFrame(schema=OUTBOX_COLUMNS)
