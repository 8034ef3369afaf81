"""Build and renew eval-slice versions: the lake in, an immutable version, a renewal queue and an event out.

`renew` does both: with no version yet it builds v1 (a stratified sample of recent traffic); with one, it
measures the latest version's drift from recent traffic and its age, and past a threshold (or when
forced) proposes the next version: keep what still represents traffic, retire what no longer does, fill
the gaps from recent traffic. Gaps that need people (strata short of confident labels, weak labels in
clusters the old version missed, a gold share under the minimum) go to the renewal queue.

Order of effects: the renewal queue's items into the annotation outbox, then the version's files, then its
commit on the slice's Delta table (`slices/<name>`, with the manifest: the commit point), then the announcement. A
crash before the commit leaves no version; the rerun proposes the same one and queues nothing new (its items are
in the outbox under the same source). Two renewals of one slice at once both propose the same version: one
commits it, the other fails with VersionExistsError.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from flywheel_feedback.labeling.clusters import TopicModel, fit_topics
from flywheel_feedback.labeling.drift import CLUSTER, DriftReport, measure_drift
from flywheel_feedback.labeling.records import mask_distinct, slice_records, with_reference
from flywheel_feedback.labeling.slicing import (
    STRATUM,
    Proposal,
    allocate,
    eligible_expr,
    propose,
    renewal_queue,
    stratum_expr,
)
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import OUTBOX
from flywheel_feedback.services.slices.announce import Announcer, announce_pending
from flywheel_feedback.services.slices.definitions import SliceDefinition
from flywheel_feedback.services.slices.manifest import slice_manifest
from flywheel_feedback.services.slices.queue import new_items, renewal_source, write_items
from flywheel_feedback.services.slices.traffic import NoTrafficError, Traffic, read_traffic
from flywheel_feedback.services.slices.versions import (
    DATA,
    RETIRED,
    latest_version,
    open_version,
    publish,
    read_frame,
    slice_root,
)

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
_CURRENT_SCHEMA: dict[str, pl.DataType] = {
    "interaction_id": pl.String(), STRATUM: pl.String(), "ts": pl.Datetime("us", "UTC"),
    "label_source": pl.String(), "present": pl.Boolean(), "eligible": pl.Boolean(),
}


@dataclass(frozen=True)
class RenewalResult:
    name: str
    renewed: bool  # a next version was proposed (and published unless a dry run)
    published: bool
    version: int | None  # the proposed version, or the current one when nothing was proposed
    parent: int | None
    reason: str
    drift_before: DriftReport | None = None
    drift_after: DriftReport | None = None
    rows: int = 0
    kept: int = 0
    added: int = 0
    retired_by_reason: dict[str, int] = field(default_factory=dict)
    shortfall: int = 0
    queued: int = 0
    gold_share: float = 0.0
    manifest: dict[str, Any] | None = None
    data: pl.DataFrame | None = None
    announced: bool = False
    announce_error: str | None = None
    seconds: float = 0.0

    @property
    def retired(self) -> int:
        return sum(self.retired_by_reason.values())


@dataclass(frozen=True)
class _State:
    traffic: Traffic
    recent: pl.DataFrame  # with topic_cluster, stratum, eligible
    model: TopicModel
    parent_version: int | None
    parent_manifest: dict[str, Any] | None
    parent_rows: pl.DataFrame | None
    before: DriftReport | None


def check_drift(
    store: ObjectStore, definition: SliceDefinition, *, as_of: datetime | None = None
) -> DriftReport | None:
    """The latest version's drift from recent traffic and its age (None when nothing is published yet)."""
    return _prepare(store, definition, as_of=as_of, say=lambda _: None).before


def renew(
    store: ObjectStore,
    definition: SliceDefinition,
    *,
    as_of: datetime | None = None,
    force: bool = False,
    dry_run: bool = False,
    announcer: Announcer | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RenewalResult:
    """Build the first version, or renew the latest one when it drifted or aged past its thresholds."""
    say = progress or (lambda _: None)
    started = time.perf_counter()
    state = _prepare(store, definition, as_of=as_of, say=say)
    before = state.before
    redefined = state.parent_manifest is not None and (
        state.parent_manifest.get("definition", {}).get("fingerprint") != definition.fingerprint
    )
    if before is not None and not before.stale and not redefined and not force:
        return RenewalResult(
            name=definition.name, renewed=False, published=False, version=state.parent_version,
            parent=state.parent_version, drift_before=before, seconds=time.perf_counter() - started,
            reason=f"fresh: divergence {before.divergence:.4f} <= {definition.drift_threshold}, "
                   f"age {before.age} <= {definition.max_age}",
        )
    version = (state.parent_version or 0) + 1
    say(f"proposing {definition.name} v{version}")
    counts = dict(state.recent.group_by(STRATUM).agg(pl.len()).iter_rows())
    targets = allocate(counts, size=definition.size, min_per_stratum=definition.min_per_stratum)
    current, refreshed = _current(state, definition)
    proposal = propose(current, state.recent.filter(pl.col("eligible")), targets,
                       cutoff=state.traffic.watermark - definition.max_age, seed=definition.seed)
    rows = _materialize(proposal, refreshed, state, version)
    after = measure_drift(rows, state.recent, threshold=definition.drift_threshold, cluster_names=state.model.names)
    retired = _retired(proposal, state.parent_rows)

    queue_source = renewal_source(definition.name, version)
    queue = renewal_queue(
        rows.select("interaction_id", "stratum", "topic_cluster", "label_source", "confidence"),
        state.recent.filter(~pl.col("eligible")).select("interaction_id", STRATUM, CLUSTER, "confidence"),
        shortfall=proposal.shortfall,
        uncovered_clusters=[g.cluster for g in before.uncovered] if before else [],
        min_gold_share=definition.min_gold_share,
        budget=definition.renewal_budget,
        reason_prefix=f"slice {definition.name} v{version}",
        seed=definition.seed,
    )
    queued = new_items(store, queue, source=queue_source)
    reason = "first version" if before is None else (
        f"divergence {before.divergence:.4f} > {definition.drift_threshold}" if before.drifted else
        f"age {before.age} > {definition.max_age}" if before.too_old else
        "definition changed" if redefined else "forced")
    manifest = slice_manifest(
        definition=definition, version=version, rows=rows, retired=retired, proposal=proposal,
        traffic=state.traffic, recent=state.recent, model=state.model, before=before, after=after,
        parent_version=state.parent_version, parent_manifest=state.parent_manifest,
        queue={"table": OUTBOX.name, "source": queue_source, "items": queued.height}, as_of=as_of, reason=reason,
        created_at=now or datetime.now(UTC),
    )
    result = RenewalResult(
        name=definition.name, renewed=True, published=False, version=version, parent=state.parent_version,
        reason=reason, drift_before=before, drift_after=after, rows=rows.height, kept=proposal.keep.height,
        added=proposal.fill.height, retired_by_reason=manifest["changes"]["retired_by_reason"],
        shortfall=sum(proposal.shortfall.values()), queued=queued.height, gold_share=manifest["gold_share"],
        manifest=manifest, data=rows,
    )
    if dry_run:
        return _done(result, started)
    say(f"publishing {definition.name} v{version}: {rows.height} rows, {queued.height} items to the renewal queue")
    write_items(store, queued, source=queue_source)
    parts = {DATA: rows}
    if state.parent_rows is not None:
        parts[RETIRED] = retired
    written = publish(store, slice_root(definition.name), version, parts, manifest)
    announced, error = _announce(store, announcer)
    return _done(result, started, published=True, manifest=written, announced=announced, announce_error=error)


def _done(result: RenewalResult, started: float, **changes: Any) -> RenewalResult:
    from dataclasses import replace

    return replace(result, seconds=time.perf_counter() - started, **changes)


def _prepare(store: ObjectStore, definition: SliceDefinition, *, as_of: datetime | None, say: Progress) -> _State:
    say(f"reading labeled traffic for {definition.name}")
    traffic = read_traffic(store, tasks=definition.tasks, as_of=as_of)
    recent = traffic.frame.filter(pl.col("ts") > traffic.watermark - definition.window)
    if recent.is_empty():
        raise NoTrafficError(f"no traffic for {definition.name} in the {definition.window} before "
                             f"{traffic.watermark.isoformat()}")
    root = slice_root(definition.name)
    parent_version = latest_version(store, root)
    parent_manifest = parent_rows = None
    if parent_version is not None:
        parent = open_version(store, root, parent_version)
        parent_manifest = parent.manifest
        parent_rows = read_frame(store, parent)  # as published, verified against its hash
    say(f"clustering {recent.height} recent interactions" + (f" and v{parent_version}" if parent_version else ""))
    model = _fit(definition, recent, parent_rows)
    recent = recent.with_columns(model.predict(recent.get_column("input_text")).alias(CLUSTER)).with_columns(
        stratum_expr(definition.strata), eligible_expr(definition.min_confidence).alias("eligible")
    )
    before = None
    if parent_rows is not None and parent_manifest is not None:
        clustered = parent_rows.with_columns(model.predict(parent_rows.get_column("input")).alias(CLUSTER))
        built_at = datetime.fromisoformat(parent_manifest["source"]["watermark"])
        before = measure_drift(
            clustered, recent, threshold=definition.drift_threshold, cluster_names=model.names,
            age=traffic.watermark - built_at, max_age=definition.max_age,
        )
    return _State(traffic, recent, model, parent_version, parent_manifest, parent_rows, before)


def _fit(definition: SliceDefinition, recent: pl.DataFrame, parent_rows: pl.DataFrame | None) -> TopicModel:
    """Clusters over recent traffic, and over the old version too when there is one, each weighing half:
    a topic only the old version holds keeps a cluster of its own instead of hiding inside a live one."""
    texts = recent.get_column("input_text")
    if parent_rows is None or parent_rows.is_empty():
        return fit_topics(texts, k=definition.clusters, seed=definition.seed)
    both = pl.concat([texts, parent_rows.get_column("input").alias(texts.name)])
    weights = pl.concat([pl.repeat(1.0 / recent.height, recent.height, eager=True),
                         pl.repeat(1.0 / parent_rows.height, parent_rows.height, eager=True)])
    return fit_topics(both, weights=weights, k=definition.clusters, seed=definition.seed)


def _current(state: _State, definition: SliceDefinition) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The old version's items as they stand in the lake now (label refreshed: gold may have arrived)."""
    if state.parent_rows is None:
        return pl.DataFrame(schema=_CURRENT_SCHEMA), state.recent.clear()
    ids = state.parent_rows.select("interaction_id", pl.col("ts").alias("_old_ts"))
    refreshed = state.traffic.frame.join(ids, on="interaction_id", how="semi")
    clusters = state.model.predict(refreshed.get_column("input_text")).alias(CLUSTER)
    refreshed = refreshed.with_columns(clusters).with_columns(
        stratum_expr(definition.strata), eligible_expr(definition.min_confidence).alias("eligible")
    )
    current = ids.join(
        refreshed.select("interaction_id", STRATUM, "ts", "label_source", "eligible"), on="interaction_id", how="left"
    ).select(
        "interaction_id",
        pl.col(STRATUM),
        pl.coalesce("ts", "_old_ts").alias("ts"),
        "label_source",
        pl.col(STRATUM).is_not_null().alias("present"),
        pl.col("eligible").fill_null(False),
    )
    return current, refreshed


def _materialize(proposal: Proposal, refreshed: pl.DataFrame, state: _State, version: int) -> pl.DataFrame:
    """The new version's rows: kept items as the lake has them now, filled items from recent traffic."""
    kept = refreshed.join(proposal.keep.select("interaction_id"), on="interaction_id", how="semi")
    if state.parent_rows is not None:
        kept = kept.join(state.parent_rows.select("interaction_id", "added_in"), on="interaction_id", how="left")
    else:
        kept = kept.with_columns(pl.lit(None, dtype=pl.Int32).alias("added_in"))
    fill = proposal.fill.with_columns(pl.lit(version, dtype=pl.Int32).alias("added_in"))
    columns = [*state.traffic.frame.columns, CLUSTER, STRATUM, "added_in"]
    rows = pl.concat([kept.select(columns), fill.select(columns)], how="vertical_relaxed")
    rows = mask_distinct(rows, ["output_text", "edited_text", "correction_text", "annotator_correction"])
    return slice_records(with_reference(rows), cluster_names=state.model.names)


def _retired(proposal: Proposal, parent_rows: pl.DataFrame | None) -> pl.DataFrame:
    retired = proposal.retire
    if parent_rows is not None:
        retired = retired.join(parent_rows.select("interaction_id", "added_in", pl.col("topic").alias("old_topic")),
                               on="interaction_id", how="left")
    return retired.sort("interaction_id")


def _announce(store: ObjectStore, announcer: Announcer | None) -> tuple[bool, str | None]:
    if announcer is None:
        return False, None
    try:
        announce_pending(store, announcer)  # this version, and any an earlier outage left unannounced
    except Exception as e:  # any Kafka failure: the version is durable and stays marked unannounced
        log.warning("published, but the announcement failed (it stays pending): %s", e)
        return False, f"{type(e).__name__}: {e}"
    return True, None
