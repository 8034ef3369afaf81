"""The lake's dead letters: what file capture (`flywheel ingest`, the demo) rejected, one Parquet file per batch
under `dead-letter/` (offset, reason, the line's bytes). Capture from Kafka dead-letters to a topic instead
(CaptureSettings.dlq_topic), whose retention is Kafka's (`retention.ms`).

Dead letters are raw text as it was sent, so they are erased with the person they name (`erase`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import polars as pl

from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import DEAD_LETTER_PREFIX


def erase(store: ObjectStore, needles: Sequence[str]) -> tuple[int, int]:
    """Remove every dead letter whose bytes hold one of `needles` (a user id, their interaction ids); a file left
    empty is deleted, the others rewritten in place. Returns (rows removed, files changed)."""
    terms = [n.encode() for n in needles if n]
    if not terms:
        return 0, 0
    rows = files = 0
    for key in store.list(f"{DEAD_LETTER_PREFIX}/"):
        if not key.endswith(".parquet"):
            continue
        frame = pl.read_parquet(io.BytesIO(store.get(key)))
        values = frame.get_column("value").to_list()
        hit = pl.Series([any(t in (v or b"") for t in terms) for v in values], dtype=pl.Boolean)
        removed = int(hit.sum())
        if not removed:
            continue
        kept = frame.filter(~hit)
        if kept.height:
            buf = io.BytesIO()
            kept.write_parquet(buf)
            store.put(key, buf.getvalue())
        else:
            store.delete(key)
        rows, files = rows + removed, files + 1
    return rows, files
