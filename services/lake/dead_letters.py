"""The lake's dead letters: what file capture (`flywheel ingest`, the demo) rejected, one Parquet file per batch
under `dead-letter/` (offset, reason, the line's bytes). Capture from Kafka dead-letters to a topic instead
(CaptureSettings.dlq_topic), whose retention is Kafka's (`retention.ms`).

Dead letters are raw text as it was sent, so they are erased with the person they name (`erase`) and expire with
the maintenance's retention (`expire`), by the files' modification time.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import polars as pl

from flywheel_feedback.services.lake.store import LocalStore, ObjectStore, S3Store
from flywheel_feedback.services.lake.tables import DEAD_LETTER_PREFIX

log = logging.getLogger(__name__)


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


def expire(store: ObjectStore, *, before: datetime) -> int:
    """Delete the dead-letter files last written before `before`; returns how many."""
    deleted = 0
    for key, modified in listed_with_times(store, f"{DEAD_LETTER_PREFIX}/"):
        if modified < before:
            store.delete(key)
            deleted += 1
    if deleted:
        log.info("dead letters: %d files written before %s deleted", deleted, before.isoformat())
    return deleted


def listed_with_times(store: ObjectStore, prefix: str) -> list[tuple[str, datetime]]:
    """The keys under `prefix` with their modification times (local mtime, S3 LastModified)."""
    if isinstance(store, LocalStore):
        keys = store.list(prefix)
        paths = [store.root / k for k in keys]
        return [(k, datetime.fromtimestamp(p.stat().st_mtime, UTC)) for k, p in zip(keys, paths, strict=True)]
    if isinstance(store, S3Store):
        strip = len(store.prefix) + 1 if store.prefix else 0
        found: list[tuple[str, datetime]] = []
        key = f"{store.prefix}/{prefix}" if store.prefix else prefix
        for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=key):
            found.extend((o["Key"][strip:], o["LastModified"].astimezone(UTC)) for o in page.get("Contents", []))
        return sorted(found)
    raise TypeError(f"expected a LocalStore or an S3Store, got {type(store).__name__}")
