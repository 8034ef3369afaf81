"""Every table of the lake, declared once: its name, columns, partitions and key.

Every table is a Delta table (`TableSpec`, read and written through `services/lake/delta.py` and
`services/lake/merge.py`): the raw events (appended by capture, one commit per flush), the labeler's tables
(labels MERGEd by interaction, the small derived tables rewritten by each pass), the annotation outbox and the
gold answers (both written by MERGE on their key), and the versions of eval slices and training exports
(`services/slices/versions.py`). The labeler's human-readable checkpoint is a JSON file.

Raw text as it was sent is in `raw/events` and the dead letters (DEAD_LETTER_PREFIX) only: every derived table
holds it masked (labeling/pii.py; labels, gold corrections, slices, exports) or holds no free text at all
(issues, outbox, patterns, counts, summaries). Per-person ids (user_id, session_id) are in raw/events and labels.
A table's `stats` (the columns whose min and max its log records) never name an id or text column: the log
outlives the rows (services/privacy/erase.py).
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any, Final

import polars as pl

from flywheel_feedback.labeling.conversations import MESSAGES
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
    stats=("ts",),  # an event's interaction is found by time: readers pick files by their ts range
)
RAW_EVENTS_PREFIX = RAW_EVENTS.name

# Labels: one row per interaction, MERGEd by the labeler, partitioned by the date it was served. A row holds the
# interaction's signal features, its labeling-function votes (`pattern`, one code per function, see
# labeling/votes.py) and its gold label; the weak label is the current label model's reading of the pattern
# (LABEL_PATTERNS), joined on read (services/lake/labels.py), so a refitted model relabels every row at once.
LABELS = TableSpec(
    name="labels/interactions",
    schema=pl.Schema({
        "interaction_id": pl.String(),
        "ts": pl.Datetime("us", "UTC"),
        "app": pl.String(),
        "task": pl.String(),
        "user_id": pl.String(),
        "session_id": pl.String(),
        "model_id": pl.String(),
        "model_version": pl.String(),
        "input_text": pl.String(),  # the prompt, or a chat's last user message
        "output_text": pl.String(),
        "segment": pl.String(),
        "n_feedback": pl.Int64(),
        "n_edits": pl.Int64(),
        "n_retries": pl.Int64(),
        "copied": pl.Boolean(),
        "accepted": pl.Boolean(),
        "corrected": pl.Boolean(),
        "abandoned_explicit": pl.Boolean(),
        "dwell_ms": pl.Int64(),
        "edited_text": pl.String(),
        "correction_text": pl.String(),
        "explicit_label": pl.Int32(),
        "time_to_retry_s": pl.Float64(),
        "abandoned_inferred": pl.Boolean(),  # null while the abandonment window is open
        "edit_ratio": pl.Float64(),
        "rephrase_similarity": pl.Float64(),
        "pattern": pl.String(),
        "gold_label": pl.Int64(),
        "annotators": pl.Int64(),
        "gold_agreement": pl.Float64(),  # the share of its annotators who chose the gold label
        "lf_fingerprint": pl.String(),
        "raw_version": pl.Int64(),  # the raw table's version this row was computed from
        "date": pl.Date(),
        # a chat input's whole message list as JSON text (null: a plain prompt); last, where an older table
        # gains it (delta.merge adds the columns a table lacks)
        "input_messages": pl.String(),
    }),
    partition_by=("date",),
    keys=("interaction_id",),
    stats=("ts",),
)
# The label model's reading of every vote pattern the labels hold, rewritten by each pass.
LABEL_PATTERNS = TableSpec(
    name="labels/patterns",
    schema=pl.Schema({
        "pattern": pl.String(),
        "covered": pl.Boolean(),
        "weak_label": pl.Int64(),
        "confidence": pl.Float64(),
        "prob_good": pl.Float64(),
        "implicit_label": pl.Int64(),
        "label_model_version": pl.String(),
        "lf_fingerprint": pl.String(),
    }),
    keys=("pattern",),
)
# How many interactions served on each date have each (pattern, gold label): what the label model is fitted
# from, over a window of recent dates. Kept up to date from the rows a pass changes.
VOTE_COUNTS = TableSpec(
    name="labels/vote_counts",
    schema=pl.Schema({"date": pl.Date(), "pattern": pl.String(), "gold_label": pl.Int64(), "count": pl.Int64()}),
    keys=("date", "pattern", "gold_label"),
)
# cleanlab's findings over the recent window: the interactions whose label looks wrong.
ISSUES = TableSpec(
    name="labels/issues",
    schema=pl.Schema({
        "interaction_id": pl.String(),
        "label": pl.Int64(),
        "suggested_label": pl.Int64(),
        "label_quality": pl.Float64(),
        "label_model_version": pl.String(),
        "raw_version": pl.Int64(),
    }),
    keys=("interaction_id",),
)
# One row per labeling function over the label model's window: coverage, overlap, conflict, accuracies.
LF_SUMMARY = TableSpec(
    name="labels/lf_summary",
    schema=pl.Schema({
        "name": pl.String(),
        "polarity": pl.List(pl.Int64()),
        "coverage": pl.Float64(),
        "overlap": pl.Float64(),
        "conflict": pl.Float64(),
        "gold_votes": pl.Int64(),
        "empirical_accuracy": pl.Float64(),
        "learned_accuracy": pl.Float64(),
        "label_model_fallback": pl.String(),
        "raw_version": pl.Int64(),
    }),
    keys=("name",),
)
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
    stats=("submitted_at",),  # retention deletes by it
)

# Versions of eval slices and training exports: one table per slice (`slices/<name>`) and per export kind
# (`exports/<kind>`), partitioned by the version number (`version`). Publishing version k is one commit adding the
# files of partition version=k, with the version's manifest in the commit's custom metadata; a version is read at
# the Delta version of that commit. A slice's table is also partitioned by `role`: "data" (the version's rows,
# SLICE_SCHEMA) or "retired" (the items it retired, SLICE_RETIRED_SCHEMA); each file holds its role's columns only
# (readers fill the others with nulls). Append-only, and the log is never cleaned up, so every version stays
# readable and its manifest stays in the log. Delta has no unsigned integers: those columns are stored as Int64
# (and read back as the rows' own types).
VERSION_TABLE_CONFIG: Final[dict[str, str]] = {
    "delta.appendOnly": "true",
    "delta.enableExpiredLogCleanup": "false",
    "delta.dataSkippingNumIndexedCols": "0",  # the log records no column's min and max (ids, text)
}
SLICE_RETIRED_SCHEMA: Final = pl.Schema({
    "interaction_id": pl.String(),
    "stratum": pl.String(),
    "reason": pl.String(),
    "added_in": pl.Int32(),
    "old_topic": pl.String(),
})


# The audit of erasures (services/privacy/erase.py): one row per table an erasure searched, with the rows it
# deleted there. Who asked (the operator or the ticket system, from a setting or option) and when; nothing about
# the person erased, not even a hash of their id (a hash of a guessable id is the id).
ERASURES = TableSpec(
    name="privacy/erasures",
    schema=pl.Schema({
        "erasure_id": pl.String(),
        "requested_by": pl.String(),
        "requested_at": pl.Datetime("us", "UTC"),
        "finished_at": pl.Datetime("us", "UTC"),
        "table": pl.String(),
        "rows": pl.Int64(),
        "files_rewritten": pl.Int64(),
        "new_version": pl.Int64(),  # a slice or export: the version published without the rows
    }),
    keys=("erasure_id", "table"),
    stats=("requested_at",),
)

# Erasures whose Argilla part is not done yet (services/privacy/argilla.py): one row per interaction of the
# person whose record must leave Argilla, by the SHA-256 of its id (a random UUID, so the hash names no one and
# the lake holds no link to the person meanwhile). The rows are deleted, and the files vacuumed, once done.
ARGILLA_PENDING = TableSpec(
    name="privacy/argilla_pending",
    schema=pl.Schema({
        "erasure_id": pl.String(),
        "requested_by": pl.String(),
        "requested_at": pl.Datetime("us", "UTC"),
        "interaction_hash": pl.String(),
    }),
    keys=("erasure_id", "interaction_hash"),
    stats=("requested_at",),
)


# Which data fed which model (services/models/lineage.py): one row per link, appended by `flywheel models record`.
# relation "trained_on" names an export version, "evaluated_on" a slice version with the scores (`metrics`, JSON)
# the model got on it. A model is `model_id` at `model_version`.
MODEL_LINEAGE = TableSpec(
    name="models/lineage",
    schema=pl.Schema({
        "model_id": pl.String(),
        "model_version": pl.String(),
        "relation": pl.String(),
        "dataset": pl.String(),  # the root: exports/<kind> or slices/<name>
        "dataset_version": pl.Int64(),
        "metrics": pl.String(),
        "recorded_at": pl.Datetime("us", "UTC"),
    }),
    keys=("model_id", "model_version", "relation", "dataset", "dataset_version", "recorded_at"),
    stats=("recorded_at",),
)

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
# each kind in the layout its trainers read (labeling/exports.py); conversations are lists of {role, content}
EXPORT_VERSIONS: Final[dict[str, TableSpec]] = {
    "sft": TableSpec(
        name="exports/sft",
        schema=pl.Schema({
            "interaction_id": pl.String(), "messages": MESSAGES, "source": pl.String(),
            **_EXPORT_BASE, "label_source": pl.String(), "confidence": pl.Float64(), "version": pl.Int64(),
        }),
        partition_by=("version",),
        keys=("version", "interaction_id"),
    ),
    "preference": TableSpec(
        name="exports/preference",
        schema=pl.Schema({
            "pair_id": pl.String(), "prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES,
            "source": pl.String(), "interaction_id": pl.String(), "chosen_interaction_id": pl.String(),
            **_EXPORT_BASE, "version": pl.Int64(),
        }),
        partition_by=("version",),
        keys=("version", "pair_id"),
    ),
    "classifier": TableSpec(
        name="exports/classifier",
        schema=pl.Schema({
            "interaction_id": pl.String(), "text": pl.String(), "label": pl.Int64(), "confidence": pl.Float64(),
            "source": pl.String(), "label_name": pl.String(), "input": pl.String(), "output": pl.String(),
            **_EXPORT_BASE, "version": pl.Int64(),
        }),
        partition_by=("version",),
        keys=("version", "interaction_id"),
    ),
}


def slice_table(name: str) -> TableSpec:
    """The versions table of the slice `name` (SLICE_VERSIONS under `slices/<name>`)."""
    return replace(SLICE_VERSIONS, name=f"slices/{name}")


LABELER_STATE_KEY = "state/labeler.json"
# What file capture rejected: Parquet files (offset, reason, the line as sent), not a Delta table
# (services/lake/dead_letters.py). Capture from Kafka dead-letters to a topic instead.
DEAD_LETTER_PREFIX = "dead-letter"


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
