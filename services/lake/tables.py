"""Every table of the lake, declared once: its name, columns, partitions and key.

Delta tables (`TableSpec`, read and written through `services/lake/delta.py`): the raw events; the versions of
eval slices and training exports (written by `services/slices/versions.py`).
Still plain Parquet under fixed prefixes, written atomically (moving to Delta next): the labeler's outputs,
the annotation outbox and the gold labels. Each writer names those files deterministically, so a rerun
rewrites rather than appends.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any, Final

import polars as pl

from flywheel_feedback.labeling.records import SLICE_SCHEMA
from flywheel_feedback.services.lake.delta import TableSpec
from flywheel_feedback.services.lake.store import ObjectStore

_MODEL = pl.Struct({"id": pl.String, "version": pl.String, "provider": pl.String})
_MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})
_INPUT = pl.Struct({"prompt": pl.String, "messages": pl.List(_MESSAGE)})

# What polars reads from each event's JSON. Types were already checked by the pydantic
# contract before a line gets here, so this only shapes columns.
EVENT_JSON_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "type": pl.String(),
    "schema_version": pl.Int64(),
    "ts": pl.String(),
    "interaction_id": pl.String(),
    "session_id": pl.String(),
    "user_id": pl.String(),
    "app": pl.String(),
    "task": pl.String(),
    "model": _MODEL,
    "input": _INPUT,
    "output": pl.String(),
    "latency_ms": pl.Int64(),
    # polars keeps an object read into a String column as its JSON text: small and cheap to query
    "metadata": pl.String(),
    "thumbs": pl.String(),
    "score": pl.Int64(),
    "comment": pl.String(),
    "text": pl.String(),
    "new_interaction_id": pl.String(),
    "chars": pl.Int64(),
    "reason": pl.String(),
    "prompt": pl.String(),
    "next_interaction_id": pl.String(),
    "dwell_ms": pl.Int64(),
}

POSITION_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "kafka_topic": pl.String(),
    "kafka_partition": pl.Int32(),
    "kafka_offset": pl.Int64(),
    "raw": pl.String(),
}

EVENTS_SCHEMA = pl.Schema({**EVENT_JSON_SCHEMA, **POSITION_SCHEMA})

# Raw events: what capture accepted, once per Kafka record (the Kafka offsets travel in the commits), partitioned
# by the event's own date. Readers still deduplicate by event_id, for what producers sent twice.
RAW_EVENTS = TableSpec(
    name="raw/events",
    schema=pl.Schema({**EVENTS_SCHEMA, "date": pl.Date()}),
    partition_by=("date",),
    keys=("event_id",),
)
RAW_EVENTS_PREFIX = RAW_EVENTS.name

# Versions of eval slices and training exports: one table per slice (`slices/<name>`) and per export kind
# (`exports/<kind>`), partitioned by the version number (`version`). Publishing version k is one commit adding the
# files of partition version=k, with the version's manifest in the commit's custom metadata; a version is read at
# the Delta version of that commit. A slice's table is also partitioned by `role`: "data" (the version's rows,
# SLICE_SCHEMA) or "retired" (the items it retired, SLICE_RETIRED_SCHEMA); each file holds its role's columns only
# (readers fill the others with nulls). Append-only, and the log is never cleaned up, so every version stays
# readable and its manifest stays in the log. Delta has no unsigned integers: those columns are stored as Int64
# (and read back as the rows' own types).
VERSION_TABLE_CONFIG: Final[dict[str, str | None]] = {
    "delta.appendOnly": "true",
    "delta.enableExpiredLogCleanup": "false",
}
SLICE_RETIRED_SCHEMA: Final = pl.Schema({
    "interaction_id": pl.String(),
    "stratum": pl.String(),
    "reason": pl.String(),
    "added_in": pl.Int32(),
    "old_topic": pl.String(),
})


def delta_types(schema: pl.Schema) -> pl.Schema:
    """`schema` with the types Delta lacks (unsigned integers) replaced by ones that hold every value."""
    wider: dict[type[pl.DataType], pl.DataType] = {pl.UInt8: pl.Int16(), pl.UInt16: pl.Int32(), pl.UInt32: pl.Int64()}
    return pl.Schema({c: wider.get(type(t), t) for c, t in schema.items()})


SLICE_VERSIONS = TableSpec(
    name="slices/<name>",
    schema=delta_types(pl.Schema({**SLICE_SCHEMA, **SLICE_RETIRED_SCHEMA, "version": pl.Int64(), "role": pl.String()})),
    partition_by=("version", "role"),
    keys=("version", "role", "interaction_id"),
)
_EXPORT_BASE = {"task": pl.String(), "model_version": pl.String()}
EXPORT_VERSIONS: Final[dict[str, TableSpec]] = {
    "sft": TableSpec(
        name="exports/sft",
        schema=pl.Schema({
            "interaction_id": pl.String(), "prompt": pl.String(), "completion": pl.String(), "source": pl.String(),
            **_EXPORT_BASE, "label_source": pl.String(), "confidence": pl.Float64(), "version": pl.Int64(),
        }),
        partition_by=("version",),
        keys=("version", "interaction_id"),
    ),
    "preference": TableSpec(
        name="exports/preference",
        schema=pl.Schema({
            "pair_id": pl.String(), "interaction_id": pl.String(), "prompt": pl.String(), "chosen": pl.String(),
            "rejected": pl.String(), "source": pl.String(), "chosen_interaction_id": pl.String(), **_EXPORT_BASE,
            "version": pl.Int64(),
        }),
        partition_by=("version",),
        keys=("version", "pair_id"),
    ),
    "classifier": TableSpec(
        name="exports/classifier",
        schema=pl.Schema({
            "interaction_id": pl.String(), "text": pl.String(), "input": pl.String(), "output": pl.String(),
            "label": pl.Int64(), "label_name": pl.String(), "confidence": pl.Float64(), "label_source": pl.String(),
            **_EXPORT_BASE, "version": pl.Int64(),
        }),
        partition_by=("version",),
        keys=("version", "interaction_id"),
    ),
}


def slice_table(name: str) -> TableSpec:
    """The versions table of the slice `name` (SLICE_VERSIONS under `slices/<name>`)."""
    return replace(SLICE_VERSIONS, name=f"slices/{name}")


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
