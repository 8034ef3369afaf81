"""Plain-text reports of slices for the CLI: a renewal, a drift measure, a manifest, a diff."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flywheel_feedback.labeling.drift import DriftReport

if TYPE_CHECKING:
    from flywheel_feedback.services.slices.api import SliceDiff
    from flywheel_feedback.services.slices.build import RenewalResult


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(timedelta(seconds=round(seconds)))


def drift_lines(report: DriftReport | Mapping[str, Any], *, label: str = "drift") -> list[str]:
    data = report.to_dict() if isinstance(report, DriftReport) else dict(report)
    dims = ", ".join(f"{k} {v:.4f}" for k, v in data["by_dimension"].items())
    lines = [
        f"{label}: divergence {data['divergence']:.4f} (threshold {data['threshold']}) "
        f"{'DRIFTED' if data['drifted'] else 'ok'}; {dims}",
        f"  age {_age(data.get('age_s'))} (max {_age(data.get('max_age_s'))})"
        f"{' TOO OLD' if data.get('too_old') else ''}; {data['slice_rows']} slice rows vs "
        f"{data['traffic_rows']} recent interactions",
    ]
    for gap in data["uncovered"]:
        lines.append(f"  uncovered cluster {gap['cluster']} '{gap['name']}': {gap['traffic_share']:.1%} of traffic, "
                     f"{gap['slice_share']:.1%} of the slice")
    return lines


def renewal_lines(result: RenewalResult) -> list[str]:
    lines = []
    if result.drift_before is not None:
        lines += drift_lines(result.drift_before, label=f"{result.name} v{result.parent} before")
    if not result.renewed:
        return [*lines, f"{result.name}: no renewal ({result.reason})"]
    verb = "published" if result.published else "proposed (dry run)"
    lines.append(f"{result.name} v{result.version} {verb} ({result.reason}): {result.rows} rows, kept {result.kept}, "
                 f"added {result.added}, retired {result.retired} {result.retired_by_reason or ''}")
    if result.drift_after is not None:
        lines += drift_lines(result.drift_after, label=f"{result.name} v{result.version} after")[:1]
    lines.append(f"  gold share {result.gold_share:.1%}; {result.shortfall} short of eligible labels; "
                 f"{result.queued} items to the renewal queue; {result.seconds:.1f}s")
    if result.manifest and "content_hash" in result.manifest:
        lines.append(f"  content hash {result.manifest['content_hash']}")
    if result.announce_error:
        lines.append(f"  announcement pending ({result.announce_error}); `flywheel slices announce` retries")
    elif result.announced:
        lines.append("  announced")
    return lines


def manifest_lines(manifest: Mapping[str, Any]) -> list[str]:
    source = manifest.get("source", {})
    counts = manifest.get("counts", {})
    lines = [
        f"{manifest.get('name')} v{manifest.get('version')}: {manifest.get('rows')} rows, created "
        f"{manifest.get('created_at')} ({manifest.get('reason', manifest.get('kind'))})",
        f"  content hash {manifest.get('content_hash')}",
        f"  Delta table {manifest.get('table', {}).get('name')} at version {manifest.get('table', {}).get('version')}; "
        f"read from the tables at versions {source.get('tables')}",
        f"  parent {manifest.get('parent')}; changes {manifest.get('changes', '-')}",
        f"  traffic window {source.get('window', {}).get('from')} .. {source.get('window', {}).get('to')}; "
        f"lake snapshots {source.get('lake_snapshots')}",
        f"  labels {counts.get('by_label_source', counts.get('by_source'))}; gold share {manifest.get('gold_share')}",
        f"  model versions {manifest.get('model_versions')}",
        f"  labeling functions {manifest.get('labeling', {}).get('lf_fingerprints')}, label model "
        f"{manifest.get('labeling', {}).get('label_model_versions')}",
    ]
    for key, value in sorted(counts.get("by_cluster", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(f"  cluster {key:>3} {value['rows']:>7}  {value['name']}")
    drift = manifest.get("drift") or {}
    for side in ("before", "after"):
        if drift.get(side):
            lines += drift_lines(drift[side], label=f"  drift {side}")
    return lines


def diff_lines(d: SliceDiff, *, limit: int) -> list[str]:
    lines = [f"{d.name} v{d.old} -> v{d.new}: {d.added.height} added, {d.retired.height} retired, {d.kept} kept, "
             f"{d.relabeled.height} relabeled"]
    lines.append(f"added ({d.added.height}):")
    for row in d.added.head(limit).iter_rows(named=True):
        lines.append(f"  + {row['interaction_id']}  {row['label_source']:<5}  {row['topic']}")
    lines.append(f"retired ({d.retired.height}):")
    for row in d.retired.head(limit).iter_rows(named=True):
        lines.append(f"  - {row['interaction_id']}  {row['reason']}  ({row['topic']})")
    if d.added.height > limit or d.retired.height > limit:
        lines.append(f"  (first {limit} of each; --limit shows more)")
    lines.append("rows per topic cluster (both versions clustered alike):")
    for cluster, topic, before, after in d.by_cluster.select(
        "topic_cluster", "topic", f"v{d.old}", f"v{d.new}"
    ).iter_rows():
        lines.append(f"  {cluster:>3} {before:>7} -> {after:<7} {topic}")
    return lines
