"""Small Parquet tables of the lake, each under a fixed prefix, written atomically.

The labeler's outputs, the annotation outbox and the gold labels are plain Parquet files.
A table is the union of its files; each writer names its files deterministically, so a
rerun rewrites rather than appends.
"""

from __future__ import annotations

import io
import json
from typing import Any

import polars as pl

from flywheel_feedback.services.lake.store import ObjectStore

LABELS_KEY = "labels/interactions.parquet"
ISSUES_KEY = "labels/issues.parquet"
LF_SUMMARY_KEY = "labels/lf_summary.parquet"
OUTBOX_PREFIX = "outbox/items"
OUTBOX_SENT_PREFIX = "outbox/sent"
GOLD_PREFIX = "gold/responses"
LABELER_STATE_KEY = "state/labeler.json"


def write_table(store: ObjectStore, key: str, frame: pl.DataFrame) -> None:
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd")
    store.put(key, buf.getvalue())


def read_table(store: ObjectStore, key: str) -> pl.DataFrame | None:
    if not store.exists(key):
        return None
    path = store.local_path(key)
    return pl.read_parquet(path) if path is not None else pl.read_parquet(io.BytesIO(store.get(key)))


def read_prefix(store: ObjectStore, prefix: str, *, schema: dict[str, Any] | None = None) -> pl.DataFrame:
    """Every Parquet file under a prefix, concatenated (an empty frame of `schema` if none)."""
    keys = [k for k in store.list(prefix) if k.endswith(".parquet")]
    frames = [read_table(store, k) for k in keys]
    present = [f for f in frames if f is not None and f.height]
    if not present:
        return pl.DataFrame(schema=schema or {})
    return pl.concat(present, how="diagonal_relaxed")


def write_json(store: ObjectStore, key: str, value: dict[str, Any]) -> None:
    store.put(key, json.dumps(value, indent=2, sort_keys=True).encode())


def read_json(store: ObjectStore, key: str) -> dict[str, Any] | None:
    if not store.exists(key):
        return None
    loaded: dict[str, Any] = json.loads(store.get(key))
    return loaded
