"""What a version's manifest says: counts, lineage, the changes from its parent, drift before and after.

`versions.publish` adds the file hashes, the content hash, the version number and the Delta version of its
commit when it commits the manifest; everything else is assembled here from frames, so it is a plain JSON-able
dict. `source.tables` names the Delta versions of the tables the rows were read from.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import polars as pl

from flywheel_feedback.labeling.clusters import TopicModel
from flywheel_feedback.labeling.drift import DriftReport
from flywheel_feedback.labeling.slicing import HUMAN, STRATUM, Proposal
from flywheel_feedback.services.slices.definitions import SliceDefinition
from flywheel_feedback.services.slices.traffic import Traffic, describe_rows


def counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.is_empty():
        return {}
    grouped = frame.group_by(pl.col(column).cast(pl.String).fill_null("null").alias("k")).agg(pl.len())
    return dict(sorted((str(k), int(n)) for k, n in grouped.iter_rows()))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def slice_manifest(
    *,
    definition: SliceDefinition,
    version: int,
    rows: pl.DataFrame,
    retired: pl.DataFrame,
    proposal: Proposal,
    traffic: Traffic,
    recent: pl.DataFrame,
    model: TopicModel,
    before: DriftReport | None,
    after: DriftReport,
    parent_version: int | None,
    parent_manifest: Mapping[str, Any] | None,
    queue: dict[str, Any],
    as_of: datetime | None,
    reason: str,
    created_at: datetime,
) -> dict[str, Any]:
    gold = int(rows.filter(pl.col("label_source") == HUMAN).height)
    gold_share = gold / rows.height if rows.height else 0.0
    by_cluster = counts(rows, "topic_cluster")
    described = describe_rows(rows)
    return {
        "kind": "slice",
        "name": definition.name,
        "created_at": created_at.isoformat(),
        "reason": reason,
        "definition": {**definition.model_dump(mode="json"), "fingerprint": definition.fingerprint},
        "rows": rows.height,
        "gold_share": round(gold_share, 6),
        "gold_share_met": gold_share >= definition.min_gold_share,
        "counts": {
            "by_label_source": counts(rows, "label_source"),
            "by_label": counts(rows, "label_name"),
            "by_task": counts(rows, "task"),
            "by_segment": counts(rows, "segment"),
            "by_cluster": {k: {"name": model.names[int(k)], "rows": n} for k, n in by_cluster.items()},
            "by_stratum": counts(rows, STRATUM),
        },
        "targets": {"total": sum(proposal.targets.values()), "strata": len(proposal.targets)},
        "shortfall": {
            "total": sum(proposal.shortfall.values()), "by_stratum": dict(sorted(proposal.shortfall.items())),
        },
        "model_versions": described["model_versions"],
        "source": {
            **{k: traffic.lineage[k] for k in ("lake", "lake_snapshots", "labeler_state", "event_ranges", "tables")},
            "as_of": _iso(as_of),
            "watermark": traffic.watermark.isoformat(),
            "window": {"from": (traffic.watermark - definition.window).isoformat(),
                       "to": traffic.watermark.isoformat()},
            "recent_interactions": recent.height,
            "interactions": described["interactions"],
        },
        "labeling": {
            "lf_fingerprints": sorted(rows.get_column("lf_fingerprint").drop_nulls().unique().to_list()),
            "label_model_versions": sorted(rows.get_column("label_model_version").drop_nulls().unique().to_list()),
            "labeling_functions": traffic.lineage["labeling_functions"],
        },
        "clusters": model.describe(),
        "parent": None if parent_version is None or parent_manifest is None else {
            "version": parent_version, "content_hash": parent_manifest.get("content_hash"),
        },
        "changes": {
            "kept": proposal.keep.height,
            "added": proposal.fill.height,
            "retired": retired.height,
            "retired_by_reason": counts(retired, "reason"),
        },
        "drift": {"before": None if before is None else before.to_dict(), "after": after.to_dict()},
        "renewal_queue": queue,
    }


def export_manifest(
    *,
    export_kind: str,
    records: pl.DataFrame,
    source_rows: pl.DataFrame,
    traffic: Traffic,
    options: dict[str, Any],
    excluded: dict[str, int],
    excluded_rows: int,
    parent_version: int | None,
    parent_manifest: Mapping[str, Any] | None,
    created_at: datetime,
) -> dict[str, Any]:
    """`source_rows`: the labeled interactions the records were drawn from (after exclusions)."""
    by = {
        f"by_{c}": counts(records, c) for c in ("source", "task", "label_name", "label_source") if c in records.columns
    }
    described = describe_rows(source_rows)
    return {
        "kind": "export",
        "name": export_kind,
        "export_kind": export_kind,
        "created_at": created_at.isoformat(),
        "rows": records.height,
        "counts": by,
        "options": options,
        "model_versions": described["model_versions"],
        "source": {
            **{k: traffic.lineage[k] for k in ("lake", "lake_snapshots", "labeler_state", "event_ranges", "tables")},
            "watermark": traffic.watermark.isoformat(),
            "interactions": described["interactions"],
            "candidate_interactions": source_rows.height,
        },
        "labeling": {k: traffic.lineage[k] for k in ("lf_fingerprints", "label_model_versions", "labeling_functions")},
        # eval items never train: the latest version of every slice is held out
        "excluded_slices": excluded,
        "excluded_interactions": excluded_rows,
        "parent": None if parent_version is None or parent_manifest is None else {
            "version": parent_version, "content_hash": parent_manifest.get("content_hash"),
        },
    }
