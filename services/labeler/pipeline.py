"""A labeler pass: what changed in the lake since the last pass, labeled, then the label model, cleanlab and
routing over a recent window.

A pass (services/labeler/incremental.py) reads only the raw data the commits since its checkpoint added,
recomputes the interactions that data touches, and MERGEs their label rows; the first pass, a new set of
labeling functions, or `force` relabels everything in bounded chunks instead (services/labeler/full.py).
Then it brings the derived tables up to date: the vote-pattern counts (from the rows it changed), the label
model fitted from the counts of a window of recent dates (so incremental passes and a full relabel of the same
lake fit the same model and give the same labels), the model's reading of every pattern, cleanlab over the most
recent labeled interactions, the new outbox items, and the labeling-function summary, which is written last:
its checkpoint says the pass finished. A pass that died part way is completed by the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from flywheel_feedback.labeling.confident import consensus, find_issues, out_of_fold_probs
from flywheel_feedback.labeling.default_lfs import EXPLICIT_LF_NAMES, default_registry
from flywheel_feedback.labeling.diagnostics import lf_summary
from flywheel_feedback.labeling.features import DEFAULT_HORIZON
from flywheel_feedback.labeling.label_model import LabelModel
from flywheel_feedback.labeling.lf import ABSTAIN, LFRegistry
from flywheel_feedback.labeling.routing import QUEUES, RoutingConfig, route
from flywheel_feedback.labeling.votes import COUNTS_SCHEMA, apply_changes, count_rows, decode_patterns, window
from flywheel_feedback.services.annotation.gold import gold_version, read_gold_responses
from flywheel_feedback.services.annotation.outbox import enqueue, queued_pairs
from flywheel_feedback.services.labeler.full import ChunkProgress, relabel_all
from flywheel_feedback.services.labeler.incremental import changed_rows
from flywheel_feedback.services.labeler.rows import (
    APP_GOLD,
    APP_RAW,
    Checkpoint,
    lf_set_number,
    read_checkpoint,
    read_recent_rows,
)
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.labels import join_labels
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import (
    ISSUES,
    LABEL_PATTERNS,
    LABELER_STATE_KEY,
    LABELS,
    LF_SUMMARY,
    RAW_EVENTS,
    VOTE_COUNTS,
    write_json,
)

log = logging.getLogger(__name__)

# How much more is audited while the label model has fallen back to weighted majority vote.
FALLBACK_AUDIT_FACTOR = 5

CARDINALITY = 2
SIGNAL_FEATURES = (
    "edit_ratio",
    "n_edits",
    "n_retries",
    "copied",
    "accepted",
    "rephrase_similarity",
    "corrected",
    "abandoned_explicit",
    "n_feedback",
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LabelerOptions:
    abandon_window: timedelta = timedelta(minutes=10)
    # signals count up to this long after an answer (labeling/features.py)
    horizon: timedelta = DEFAULT_HORIZON
    # the label model is fitted from the interactions served this long before the watermark
    model_window: timedelta = timedelta(days=14)
    # cleanlab looks at this many of the most recently served labeled interactions
    cleanlab_rows: int = 20_000
    # a full relabel computes this much served time at once
    chunk: timedelta = timedelta(days=1)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    folds: int = 5
    seed: int = 0
    with_cleanlab: bool = True


@dataclass(frozen=True)
class PassResult:
    changed: bool
    snapshot: str
    mode: str = ""  # "incremental", "full", or "finish" (completing a pass that died)
    interactions: int = 0  # label rows this pass wrote
    covered: int = 0
    issues: int = 0
    gold: int = 0
    queued: dict[str, int] = field(default_factory=dict)
    label_model_version: str = ""
    # why the fit was degenerate and weighted majority vote labeled instead (None: the label model did)
    label_model_fallback: str | None = None
    lf_fingerprint: str = ""
    new_events: int = 0
    seconds: float = 0.0


def snapshot_name(raw_version: int, gold: int) -> str:
    """Names what a pass labeled: the raw and gold tables' Delta versions."""
    return f"raw@{raw_version}/gold@{gold}"


def read_gold(store: ObjectStore) -> pl.DataFrame:
    """One human label per interaction from its annotators' latest answers: their label when one annotator
    answered, cleanlab's multi-annotator consensus (CROWDLAB) when several did."""
    gold = read_gold_responses(store, latest=False)
    if gold.is_empty():
        return pl.DataFrame(schema={"interaction_id": pl.String, "gold_label": pl.Int64, "annotators": pl.Int64,
                                    "gold_agreement": pl.Float64})
    latest = gold.sort("submitted_at").unique(subset=["interaction_id", "annotator"], keep="last")
    # items x annotators, null (NaN) where an annotator did not answer
    # (annotator names prefixed, so that no name can collide with the index column)
    matrix = (
        latest.with_columns(pl.format("by:{}", "annotator").alias("annotator"))
        .pivot(on="annotator", index="interaction_id", values="label")
        .sort("interaction_id")
    )
    votes = matrix.drop("interaction_id").cast(pl.Float64).to_numpy()
    agreed = consensus(votes)
    return pl.DataFrame(
        {
            "interaction_id": matrix.get_column("interaction_id"),
            "gold_label": agreed.get_column("consensus_label"),
            "annotators": agreed.get_column("num_annotations").cast(pl.Int64),
            "gold_agreement": agreed.get_column("annotator_agreement").cast(pl.Float64),
        }
    )


def label_pass(
    store: ObjectStore,
    *,
    options: LabelerOptions | None = None,
    registry: LFRegistry | None = None,
    force: bool = False,
    progress: Progress | None = None,
    on_chunk: ChunkProgress | None = None,
) -> PassResult:
    """Label what is new in the lake (everything, with `force` or a new labeling-function set)."""
    options = options or LabelerOptions()
    registry = registry or default_registry()
    say = progress or (lambda _: None)
    started = time.perf_counter()
    raw_version = delta.table_version(store, RAW_EVENTS)
    gold_at = gold_version(store)
    gold_now = -1 if gold_at is None else gold_at
    checkpoint = read_checkpoint(store)
    lf_set = lf_set_number(registry)
    if raw_version is None:
        return PassResult(changed=False, snapshot=snapshot_name(-1, gold_now))
    full = force or checkpoint is None or checkpoint.lf_set != lf_set
    if not full and checkpoint is not None and (checkpoint.raw, checkpoint.gold) == (raw_version, gold_now):
        if _finished(store, checkpoint):
            return PassResult(changed=False, snapshot=snapshot_name(checkpoint.raw, checkpoint.gold))
        say("completing the pass that was interrupted")
        return _finish(store, checkpoint, changed=None, options=options, registry=registry, mode="finish",
                       written=0, new_events=0, started=started, say=say)

    gold = read_gold(store)
    if not full and checkpoint is not None:
        say(f"reading what raw versions {checkpoint.raw + 1}..{raw_version} added")
        changes = changed_rows(store, checkpoint, raw_version=raw_version, gold_version=gold_now, gold=gold,
                               registry=registry, abandon_window=options.abandon_window, horizon=options.horizon)
        if changes is not None:
            counts = _counts_at(store, checkpoint)
            new_checkpoint = Checkpoint(raw=raw_version, gold=gold_now, watermark=changes.watermark, lf_set=lf_set)
            say(f"merging {changes.rows.height} label rows")
            if changes.rows.height:
                delta.merge(store, LABELS, changes.rows, transactions=new_checkpoint.transactions())
            else:
                delta.commit(store, LABELS, [], mode="append", transactions=new_checkpoint.transactions())
            counts = apply_changes(counts, removed=changes.before, added=changes.rows)
            delta.overwrite(store, VOTE_COUNTS, counts, transactions={APP_RAW: raw_version})
            return _finish(store, new_checkpoint, changed=changes.rows, options=options, registry=registry,
                           mode="incremental", written=changes.rows.height, new_events=changes.new_events,
                           started=started, say=say)
        say("the raw table's log no longer has the commits since the last pass: relabeling everything")
    say(f"relabeling everything at raw version {raw_version}")
    new_checkpoint, counts, written = relabel_all(
        store, raw_version=raw_version, gold_version=gold_now, lf_set=lf_set, gold=gold, registry=registry,
        abandon_window=options.abandon_window, horizon=options.horizon, chunk=options.chunk, on_chunk=on_chunk,
    )
    delta.overwrite(store, VOTE_COUNTS, counts, transactions={APP_RAW: raw_version})
    return _finish(store, new_checkpoint, changed=None, options=options, registry=registry, mode="full",
                   written=written, new_events=0, started=started, say=say)


def _finished(store: ObjectStore, checkpoint: Checkpoint) -> bool:
    done = delta.transaction_versions(store, LF_SUMMARY, [APP_RAW, APP_GOLD])
    return done.get(APP_RAW) == checkpoint.raw and done.get(APP_GOLD, -1) == checkpoint.gold


def _counts_at(store: ObjectStore, checkpoint: Checkpoint) -> pl.DataFrame:
    """The vote counts as of the checkpoint; rebuilt from the labels table if a pass died between its labels
    commit and its counts commit."""
    if delta.transaction_versions(store, VOTE_COUNTS, [APP_RAW]).get(APP_RAW) == checkpoint.raw:
        return delta.scan(store, VOTE_COUNTS).collect()
    log.warning("vote counts are behind the labels table: recounting them from the labels")
    rows = delta.scan(store, LABELS).select("date", "pattern", "gold_label").collect()
    return count_rows(rows).sort("date", "pattern", "gold_label")


def _finish(
    store: ObjectStore,
    checkpoint: Checkpoint,
    *,
    changed: pl.DataFrame | None,
    options: LabelerOptions,
    registry: LFRegistry,
    mode: str,
    written: int,
    new_events: int,
    started: float,
    say: Progress,
) -> PassResult:
    """Fit the label model from the window's counts, read every pattern with it, then cleanlab, routing and the
    summary. `changed`: the rows this pass recomputed (None: route over the recent window)."""
    snapshot = snapshot_name(checkpoint.raw, checkpoint.gold)
    counts = delta.scan(store, VOTE_COUNTS).collect().cast(COUNTS_SCHEMA)
    recent = window(counts, since=(checkpoint.watermark - options.model_window).date())
    if recent.is_empty():
        recent = window(counts, since=datetime.min.date())
    names = registry.names
    say(f"label model over {int(recent.get_column('count').sum())} interactions ({recent.height} vote patterns)")
    votes = decode_patterns(recent.get_column("pattern"), len(names))
    gold_of_pattern = recent.get_column("gold_label").to_numpy()
    model = LabelModel(cardinality=CARDINALITY, seed=options.seed).fit_counts(
        votes, recent.get_column("count").to_numpy(), gold=gold_of_pattern
    )
    fallback = model.fallback_  # None, or why the fit was degenerate (then weighted majority vote labels)
    routing = options.routing
    if fallback is not None:
        # Labels from the safe model are less sure: audit more of them, so annotators measure the damage.
        log.warning("label model fit degenerate (%s): weighted majority vote labels this pass", fallback)
        routing = replace(routing, audit_rate=min(1.0, max(routing.audit_rate * FALLBACK_AUDIT_FACTOR, 0.05)))
    patterns = _pattern_table(model, counts.get_column("pattern").unique().sort(), names, registry)
    delta.overwrite(store, LABEL_PATTERNS, patterns, transactions={APP_RAW: checkpoint.raw})

    recent_rows = join_labels(read_recent_rows(store, rows=options.cleanlab_rows), patterns, None)
    issues = _cleanlab(recent_rows, options, say) if options.with_cleanlab else _no_issues(recent_rows)
    flagged = recent_rows.join(issues.filter(pl.col("is_issue")), on="interaction_id", how="inner")
    delta.overwrite(store, ISSUES, flagged.with_columns(pl.lit(checkpoint.raw, dtype=pl.Int64).alias("raw_version")),
                    transactions={APP_RAW: checkpoint.raw})

    say("routing to annotation queues")
    changed_labels = None if changed is None else join_labels(changed, patterns, None)
    if changed_labels is None:
        candidates = recent_rows
    else:
        changed_ids = changed_labels.get_column("interaction_id").implode()
        candidates = pl.concat([
            changed_labels,
            recent_rows.filter(pl.col("interaction_id").is_in(issues.filter(pl.col("is_issue"))
                                                               .get_column("interaction_id").implode())
                               & ~pl.col("interaction_id").is_in(changed_ids)),
        ], how="diagonal_relaxed")
    candidates = candidates.drop("is_issue", "label_quality", "suggested_label", strict=False).join(
        issues, on="interaction_id", how="left").with_columns(pl.col("is_issue").fill_null(False))
    source = f"labeler:{snapshot}"
    # What this snapshot's pass queued is not "already queued": a rerun must reproduce it.
    # Other writers queue too (slice renewal): routing judges only its own queues.
    already = queued_pairs(store, queues=QUEUES, except_source=source)
    routing = _budgets_as_caps(routing, already, read_gold_responses(store).select("interaction_id"))
    routed = route(
        candidates.select(
            "interaction_id", "confidence", "is_issue", "label_quality",
            pl.col("explicit_label").alias("explicit"), "implicit_label",
            # annotators' answers are final: only their disagreement is routed (to adjudication)
            pl.col("gold_label").is_not_null().alias("human"), pl.col("gold_agreement").alias("agreement"),
        ),
        config=routing,
        already_queued=already,
        seed=options.seed,
    )
    enqueue(store, routed, source=source)

    window_votes = np.repeat(votes, recent.get_column("count").to_numpy(), axis=0)
    window_gold = np.repeat(gold_of_pattern, recent.get_column("count").to_numpy())
    summary = lf_summary(window_votes, names, gold=window_gold if (window_gold != ABSTAIN).any() else None,
                         accuracies=model.accuracies_).with_columns(
        pl.lit(fallback, dtype=pl.String).alias("label_model_fallback"),
        pl.lit(checkpoint.raw, dtype=pl.Int64).alias("raw_version"),
    )
    # written last: its checkpoint says the pass finished
    delta.overwrite(store, LF_SUMMARY, summary, transactions={APP_RAW: checkpoint.raw, APP_GOLD: checkpoint.gold})
    write_json(store, LABELER_STATE_KEY, {
        "snapshot": snapshot,
        "raw_version": checkpoint.raw,
        "gold_version": checkpoint.gold,
        "watermark": checkpoint.watermark.isoformat(),
        "lf_fingerprint": registry.fingerprint,
        "label_model_version": model.version,
        "label_model_fallback": fallback,
        "mode": mode,
        "finished_at": datetime.now(UTC).isoformat(),
        "lf_failures": registry.failures,
    })
    queued = dict(routed.group_by("queue").agg(pl.len()).iter_rows()) if routed.height else {}
    if changed_labels is not None:  # the rows this pass labeled
        covered = int(changed_labels.get_column("covered").sum())
    else:  # a full relabel: every counted interaction
        covered = int(counts.join(patterns.select("pattern", "covered"), on="pattern")
                      .filter(pl.col("covered")).get_column("count").sum())
    result = PassResult(
        changed=True,
        snapshot=snapshot,
        mode=mode,
        interactions=written,
        covered=covered,
        issues=flagged.height,
        gold=int(counts.filter(pl.col("gold_label") != ABSTAIN).get_column("count").sum()),
        queued=queued,
        label_model_version=model.version,
        label_model_fallback=fallback,
        lf_fingerprint=registry.fingerprint,
        new_events=new_events,
        seconds=time.perf_counter() - started,
    )
    log.info("labeler pass %s: %s", snapshot, result)
    return result


def _budgets_as_caps(routing: RoutingConfig, queued: pl.DataFrame, answered: pl.DataFrame) -> RoutingConfig:
    """A queue's budget caps what waits in it (queued, not yet answered), not what one pass adds: passes run every
    few seconds, annotators do not."""
    waiting = dict(queued.join(answered.unique(), on="interaction_id", how="anti").group_by("queue").len().iter_rows())
    budgets = {q: None if cap is None else max(0, cap - int(waiting.get(q, 0))) for q, cap in routing.budgets.items()}
    return replace(routing, budgets=budgets)


def _pattern_table(model: LabelModel, patterns: pl.Series, names: tuple[str, ...], registry: LFRegistry
                   ) -> pl.DataFrame:
    """The label model's reading of each vote pattern."""
    L = decode_patterns(patterns, len(names))
    probs = model.predict_proba(L) if len(L) else np.empty((0, CARDINALITY))
    covered = (L != ABSTAIN).any(axis=1)
    return pl.DataFrame({
        "pattern": patterns,
        "covered": covered,
        "weak_label": np.where(covered, probs.argmax(axis=1), ABSTAIN) if len(L) else np.empty(0, dtype=np.int64),
        "confidence": probs.max(axis=1) if len(L) else np.empty(0),
        "prob_good": probs[:, 1] if len(L) else np.empty(0),
        "implicit_label": _implicit_labels(model, L, names) if len(L) else np.empty(0, dtype=np.int64),
        "label_model_version": model.version,
        "lf_fingerprint": registry.fingerprint,
    }).cast(LABEL_PATTERNS.schema)


def _implicit_labels(model: LabelModel, L: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """What the implicit signals alone say: the label model with the explicit columns hidden."""
    implicit = L.copy()
    explicit_cols = [j for j, n in enumerate(names) if n in EXPLICIT_LF_NAMES]
    implicit[:, explicit_cols] = ABSTAIN
    has_vote = (implicit != ABSTAIN).any(axis=1)
    return np.where(has_vote, model.predict_proba(implicit).argmax(axis=1), ABSTAIN)


def _cleanlab(labels: pl.DataFrame, options: LabelerOptions, say: Progress) -> pl.DataFrame:
    """cleanlab judges weak labels: an annotator's answer is checked against other annotators, not a model."""
    candidates = labels.filter((pl.col("label") != ABSTAIN) & pl.col("gold_label").is_null())
    if candidates.height < options.folds * 4 or candidates.get_column("label").n_unique() < CARDINALITY:
        return _no_issues(labels)
    say(f"cleanlab over {candidates.height} labeled interactions")
    # two text columns, each its own feature block: far fewer distinct texts than their concatenation
    texts = candidates.select("input_text", "output_text")
    signals = candidates.select(
        [pl.col(c).cast(pl.Float64).fill_null(-1.0) for c in SIGNAL_FEATURES]
        + [(pl.col("dwell_ms").cast(pl.Float64).fill_null(0.0) + 1.0).log().alias("log_dwell")]
    ).to_numpy()
    given = candidates.get_column("label").to_numpy()
    pred_probs = out_of_fold_probs(
        texts, signals, given, cardinality=CARDINALITY, folds=options.folds, seed=options.seed
    )
    found = find_issues(given, pred_probs)
    found = found.select("is_issue", "label_quality", "suggested_label")
    return pl.concat([candidates.select("interaction_id"), found], how="horizontal")


def _no_issues(labels: pl.DataFrame) -> pl.DataFrame:
    return labels.select(
        "interaction_id",
        pl.lit(False).alias("is_issue"),
        pl.lit(None, dtype=pl.Float64).alias("label_quality"),
        pl.lit(None, dtype=pl.Int64).alias("suggested_label"),
    )
