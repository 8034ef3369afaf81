"""Every table of the lake, declared once: its name, columns, partitions and key.

Delta tables (`TableSpec`, read and written through `services/lake/delta.py`): the raw events.
Still plain Parquet under fixed prefixes, written atomically (moving to Delta next): the labeler's outputs,
the annotation outbox and the gold labels. Each writer names those files deterministically, so a rerun
rewrites rather than appends.
"""

from __future__ import annotations

import io
import json
from typing import Any

import polars as pl

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


def delta_tables() -> tuple[TableSpec, ...]:
    """Every Delta table declared here: each TableSpec of this module, alone or in a dict of them, whoever adds
    one. A name with a placeholder (`slices/<name>`) declares a family of tables made at run time, one per name:
    `services/lake/maintenance.py` finds those in the lake."""
    found: dict[str, TableSpec] = {}
    for value in list(globals().values()):
        for spec in value.values() if isinstance(value, dict) else (value,):
            if isinstance(spec, TableSpec):
                found.setdefault(spec.name, spec)
    return tuple(found.values())
