"""Every table of the lake, declared once: its name, columns, partitions and key.

Delta tables (`TableSpec`, read through `services/lake/delta.py`): the raw events (appended by capture), the
annotation outbox and the gold answers (both written by MERGE on their key, `services/lake/merge.py`).
Still plain Parquet under fixed keys, written atomically (moving to Delta next): the labeler's outputs. Each
writer names those files deterministically, so a rerun rewrites rather than appends.
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

# The annotation outbox: one row per item (an interaction in a queue), whoever queued it (`source`: "labeler:<lake
# snapshot>", "renewal:<slice>/v<k>"). dataset and sent_at stay null until Argilla confirmed the item; the push sets
# them in place. Written only by `services/annotation/outbox.py`.
OUTBOX = TableSpec(
    name="outbox/items",
    schema=pl.Schema({
        "interaction_id": pl.String(),
        "queue": pl.String(),
        "reason": pl.String(),
        "priority": pl.Float64(),
        "source": pl.String(),
        "queued_at": pl.Datetime("us", "UTC"),
        "dataset": pl.String(),
        "sent_at": pl.Datetime("us", "UTC"),
    }),
    keys=("interaction_id", "queue"),
)

# Gold answers: the annotators' submitted responses, one row per response version (a response edited later is a
# new version: same response_id, later submitted_at). Written only by `services/annotation/gold.py`.
GOLD = TableSpec(
    name="gold/responses",
    schema=pl.Schema({
        "interaction_id": pl.String(),
        "queue": pl.String(),
        "dataset": pl.String(),
        "annotator": pl.String(),
        "annotator_id": pl.String(),
        "label": pl.Int64(),
        "correction": pl.String(),
        "submitted_at": pl.Datetime("us", "UTC"),
        "response_id": pl.String(),
        "source": pl.String(),
    }),
    keys=("response_id", "submitted_at"),
)

LABELS_KEY = "labels/interactions.parquet"
ISSUES_KEY = "labels/issues.parquet"
LF_SUMMARY_KEY = "labels/lf_summary.parquet"
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


def write_json(store: ObjectStore, key: str, value: dict[str, Any]) -> None:
    store.put(key, json.dumps(value, indent=2, sort_keys=True).encode())


def read_json(store: ObjectStore, key: str) -> dict[str, Any] | None:
    if not store.exists(key):
        return None
    loaded: dict[str, Any] = json.loads(store.get(key))
    return loaded
