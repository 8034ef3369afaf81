"""Training exports: SFT examples, preference pairs and classifier data as immutable versions.

Each kind is a Delta table, `exports/<kind>`, partitioned by version (`services/slices/versions.py`): version k
is one commit holding its records (every column) and a manifest with lineage: the Delta versions of the tables
read (raw events, labels, gold), the Kafka offsets behind them, the labeling-function set and label-model
versions, the model versions covered, the options, the parent export, and the eval slices held out. The records
are in the layout trainers read (labeling/exports.py: conversations for SFT, conversational prompt/chosen/rejected
for pairs, text/label/confidence/source for classifiers); their JSON lines (`read_jsonl`, `export pull`) hold the
same columns, and the manifest names their hash too (`derived_files`). Items of the latest
version of every slice are excluded by default, so nothing a model is evaluated on is trained on. All text is
masked before it reaches a record.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from flywheel_feedback.labeling.exports import COLUMNS, Kind, classifier_records, preference_pairs, sft_records
from flywheel_feedback.labeling.records import mask_distinct, with_reference
from flywheel_feedback.services.lake.delta import TableSpec
from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import EXPORT_VERSIONS
from flywheel_feedback.services.slices.announce import Announcer, announce_pending
from flywheel_feedback.services.slices.manifest import export_manifest
from flywheel_feedback.services.slices.traffic import read_traffic
from flywheel_feedback.services.slices.versions import (
    DATA,
    SLICES_PREFIX,
    export_root,
    latest_version,
    list_roots,
    open_version,
    part_schemas,
    publish,
    read_frame,
    read_manifest,
    sha256,
)

log = logging.getLogger(__name__)

JSONL = "data.jsonl"


@dataclass(frozen=True)
class ExportResult:
    kind: Kind
    version: int | None
    rows: int
    manifest: dict[str, Any] | None
    data: pl.DataFrame
    published: bool
    announced: bool = False
    announce_error: str | None = None
    seconds: float = 0.0


def held_out(store: ObjectStore) -> tuple[pl.DataFrame, dict[str, int]]:
    """interaction_id of the latest version of every slice, and which versions those are."""
    frames, versions = [], {}
    for root, published in list_roots(store, SLICES_PREFIX).items():
        latest = open_version(store, root, published[-1])
        frames.append(read_frame(store, latest, columns=["interaction_id"]))
        versions[root.split("/", 1)[1]] = published[-1]
    ids = pl.concat(frames).unique() if frames else pl.DataFrame(schema={"interaction_id": pl.String})
    return ids, versions


def export_table(kind: Kind) -> TableSpec:
    return EXPORT_VERSIONS[kind]


def jsonl_bytes(kind: Kind, records: pl.DataFrame) -> bytes:
    """An export's records as JSON lines: the columns (and types) of its Parquet file."""
    buf = io.BytesIO()
    records.select(COLUMNS[kind]).cast(part_schemas(export_table(kind))[DATA]).write_ndjson(buf)
    return buf.getvalue()


def derived_files(kind: Kind, records: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """What the manifest says of the files made from a version's records (the JSON lines): hash, size, rows."""
    data = jsonl_bytes(kind, records)
    return {JSONL: {"sha256": sha256(data), "bytes": len(data), "rows": records.height, "from": DATA}}


def read_jsonl(store: ObjectStore, kind: Kind, version: int | None = None) -> bytes:
    """A published export (the latest when `version` is None) as JSON lines, from its verified records."""
    return jsonl_bytes(kind, read_frame(store, open_version(store, export_root(kind), version)))


def regenerations(store: ObjectStore) -> pl.DataFrame:
    """(interaction_id, new_interaction_id) of every retry that named the regeneration it produced."""
    # read_events selects before it filters by type, so the type column must be read too
    retries = read_events(store, types=["retry"], columns=["type", "interaction_id", "new_interaction_id"])
    return retries.select("interaction_id", "new_interaction_id").drop_nulls()


def export(
    store: ObjectStore,
    kind: Kind,
    *,
    tasks: Sequence[str] = (),
    min_confidence: float = 0.8,
    exclude_slices: bool = True,
    dry_run: bool = False,
    announcer: Announcer | None = None,
    now: datetime | None = None,
) -> ExportResult:
    """Build the export of `kind` from the lake's labeled traffic and publish it as the next version."""
    if kind not in ("sft", "preference", "classifier"):
        raise ValueError(f"expected kind 'sft', 'preference' or 'classifier', got {kind!r}")
    if not 0 < min_confidence <= 1:
        raise ValueError(f"expected min_confidence in (0, 1], got {min_confidence!r}")
    started = time.perf_counter()
    traffic = read_traffic(store, tasks=tasks)
    labeled = traffic.frame
    excluded: dict[str, int] = {}
    excluded_rows = 0
    if exclude_slices:
        ids, excluded = held_out(store)
        before = labeled.height
        labeled = labeled.join(ids, on="interaction_id", how="anti")
        excluded_rows = before - labeled.height
    labeled = with_reference(mask_distinct(labeled, ["output_text", "edited_text", "correction_text",
                                                     "annotator_correction"]))
    if kind == "sft":
        records = sft_records(labeled, min_confidence=min_confidence)
    elif kind == "preference":
        # a regeneration held out as an eval item must not become a chosen text either
        records = preference_pairs(labeled, regenerations(store))
    else:
        records = classifier_records(labeled, min_confidence=min_confidence)
    source_rows = labeled.join(records.select("interaction_id").unique(), on="interaction_id", how="semi")
    root = export_root(kind)
    parent = latest_version(store, root)
    version = (parent or 0) + 1
    manifest = export_manifest(
        export_kind=kind, records=records, source_rows=source_rows, traffic=traffic,
        options={"tasks": list(tasks), "min_confidence": min_confidence, "exclude_slices": exclude_slices},
        excluded=excluded, excluded_rows=excluded_rows, parent_version=parent,
        parent_manifest=read_manifest(store, root, parent) if parent else None,
        created_at=now or datetime.now(UTC),
    )
    manifest["derived_files"] = derived_files(kind, records)
    if dry_run:
        return ExportResult(kind, version, records.height, manifest, records, published=False,
                            seconds=time.perf_counter() - started)
    written = publish(store, root, version, {DATA: records}, manifest)
    announced, error = False, None
    if announcer is not None:
        try:
            announce_pending(store, announcer)
            announced = True
        except Exception as e:  # any Kafka failure: the export is durable and stays marked unannounced
            log.warning("exported, but the announcement failed (it stays pending): %s", e)
            error = f"{type(e).__name__}: {e}"
    return ExportResult(kind, version, records.height, written, records, published=True, announced=announced,
                        announce_error=error, seconds=time.perf_counter() - started)
