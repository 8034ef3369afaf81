"""One labeler pass over the lake: join, features, labeling functions, label model, cleanlab, routing.

A pass reads the raw events (deduplicated), the gold labels annotators gave, and writes:
labels (one row per interaction, with the label-model version and the labeling-function set's
fingerprint), label issues, a labeling-function summary, and queues new items in the annotation outbox
(source "labeler:<snapshot>"). It is checkpointed by a lake snapshot (the Delta versions of the raw and
gold tables it saw): a pass over an unchanged lake changes nothing, and a pass interrupted before its
checkpoint rewrites the same files and queues nothing new the next time, because every output is a
function of the snapshot.
"""

from __future__ import annotations

import hashlib
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
from flywheel_feedback.labeling.features import EVENT_COLUMNS, interaction_features
from flywheel_feedback.labeling.label_model import LabelModel
from flywheel_feedback.labeling.lf import ABSTAIN, LFRegistry
from flywheel_feedback.labeling.routing import QUEUES, RoutingConfig, route
from flywheel_feedback.services.annotation.gold import gold_version, read_gold_responses
from flywheel_feedback.services.annotation.outbox import enqueue, queued_pairs
from flywheel_feedback.services.lake.delta import table_version
from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.lake.tables import (
    ISSUES_KEY,
    LABELER_STATE_KEY,
    LABELS_KEY,
    LF_SUMMARY_KEY,
    RAW_EVENTS,
    read_json,
    write_json,
    write_table,
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
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    folds: int = 5
    seed: int = 0
    with_cleanlab: bool = True


@dataclass(frozen=True)
class PassResult:
    changed: bool
    snapshot: str
    interactions: int = 0
    covered: int = 0
    issues: int = 0
    gold: int = 0
    queued: dict[str, int] = field(default_factory=dict)
    label_model_version: str = ""
    # why the fit was degenerate and weighted majority vote labeled instead (None: the label model did)
    label_model_fallback: str | None = None
    lf_fingerprint: str = ""
    seconds: float = 0.0


def lake_snapshot(store: ObjectStore) -> str:
    """Names the lake's content: the Delta versions of the raw and gold tables."""
    keys = [f"{RAW_EVENTS.name}@{table_version(store, RAW_EVENTS)}", f"gold@{gold_version(store)}"]
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def read_gold(store: ObjectStore) -> pl.DataFrame:
    """One human label per interaction from its annotators' latest answers: their label when one annotator
    answered, cleanlab's multi-annotator consensus (CROWDLAB) when several did."""
    gold = read_gold_responses(store, latest=False)
    if gold.is_empty():
        return pl.DataFrame(schema={"interaction_id": pl.String, "gold_label": pl.Int64, "annotators": pl.UInt32})
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
            "annotators": agreed.get_column("num_annotations").cast(pl.UInt32),
        }
    )


def label_pass(
    store: ObjectStore,
    *,
    options: LabelerOptions | None = None,
    registry: LFRegistry | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> PassResult:
    options = options or LabelerOptions()
    registry = registry or default_registry()
    say = progress or (lambda _: None)
    started = time.perf_counter()
    snapshot = lake_snapshot(store)
    state = read_json(store, LABELER_STATE_KEY) or {}
    if not force and state.get("snapshot") == snapshot and state.get("lf_fingerprint") == registry.fingerprint:
        return PassResult(changed=False, snapshot=snapshot)

    say("reading events")
    events = read_events(store, columns=EVENT_COLUMNS)
    if events.is_empty():
        return PassResult(changed=False, snapshot=snapshot)
    say(f"features for {events.height} events")
    features = interaction_features(events, abandon_window=options.abandon_window)
    gold = read_gold(store)
    features = features.join(gold, on="interaction_id", how="left")

    say("labeling functions")
    L, names = registry.apply(features)
    gold_vector = features.get_column("gold_label").fill_null(ABSTAIN).to_numpy()
    say("label model")
    model = LabelModel(cardinality=CARDINALITY, seed=options.seed).fit(L, gold=gold_vector)
    fallback = model.fallback_  # None, or why the fit was degenerate (then weighted majority vote labels)
    routing = options.routing
    if fallback is not None:
        # Labels from the safe model are less sure: audit more of them, so annotators measure the damage.
        log.warning("label model fit degenerate (%s): weighted majority vote labels this pass", fallback)
        routing = replace(routing, audit_rate=min(1.0, max(routing.audit_rate * FALLBACK_AUDIT_FACTOR, 0.05)))
    probs = model.predict_proba(L)
    covered = (L != ABSTAIN).any(axis=1)
    weak = np.where(covered, probs.argmax(axis=1), ABSTAIN)
    implicit = _implicit_labels(model, L, names)
    label = np.where(gold_vector != ABSTAIN, gold_vector, weak)
    labels = features.with_columns(
        pl.Series("label", label, dtype=pl.Int64),
        pl.Series("weak_label", weak, dtype=pl.Int64),
        pl.Series("confidence", probs.max(axis=1)),
        pl.Series("prob_good", probs[:, 1]),
        pl.Series("covered", covered),
        pl.Series("implicit_label", implicit, dtype=pl.Int64),
        pl.when(pl.col("gold_label").is_not_null()).then(pl.lit("human")).otherwise(pl.lit("weak")).alias("source"),
        pl.lit(model.version).alias("label_model_version"),
        pl.lit(registry.fingerprint).alias("lf_fingerprint"),
        pl.lit(snapshot).alias("snapshot"),
    )

    issues = _cleanlab(labels, options, say) if options.with_cleanlab else _no_issues(labels)
    labels = labels.join(issues, on="interaction_id", how="left").with_columns(pl.col("is_issue").fill_null(False))

    say("routing to annotation queues")
    source = f"labeler:{snapshot}"
    # What this snapshot's pass queued is not "already queued": a rerun must reproduce it.
    # Other writers queue too (slice renewal): routing judges only its own queues.
    queued_before = queued_pairs(store, queues=QUEUES, except_source=source)
    routed = route(
        labels.select(
            "interaction_id",
            "confidence",
            "is_issue",
            "label_quality",
            pl.col("explicit_label").alias("explicit"),
            "implicit_label",
        ),
        config=routing,
        already_queued=queued_before,
        seed=options.seed,
    )

    summary = lf_summary(L, names, gold=gold_vector if (gold_vector != ABSTAIN).any() else None,
                         accuracies=model.accuracies_).with_columns(
        pl.lit(fallback, dtype=pl.String).alias("label_model_fallback"))
    write_table(store, LABELS_KEY, labels)
    write_table(store, ISSUES_KEY, labels.filter(pl.col("is_issue")).select(
        "interaction_id", "label", "suggested_label", "label_quality", "label_model_version", "snapshot"))
    write_table(store, LF_SUMMARY_KEY, summary.with_columns(pl.lit(snapshot).alias("snapshot")))
    enqueue(store, routed, source=source)
    write_json(
        store,
        LABELER_STATE_KEY,
        {
            "snapshot": snapshot,
            "lf_fingerprint": registry.fingerprint,
            "label_model_version": model.version,
            "label_model_fallback": fallback,
            "finished_at": datetime.now(UTC).isoformat(),
            "lf_failures": registry.failures,
        },
    )
    queued = dict(routed.group_by("queue").agg(pl.len()).iter_rows()) if routed.height else {}
    result = PassResult(
        changed=True,
        snapshot=snapshot,
        interactions=labels.height,
        covered=int(covered.sum()),
        issues=int(labels.get_column("is_issue").sum()),
        gold=int((gold_vector != ABSTAIN).sum()),
        queued=queued,
        label_model_version=model.version,
        label_model_fallback=fallback,
        lf_fingerprint=registry.fingerprint,
        seconds=time.perf_counter() - started,
    )
    log.info("labeler pass %s: %s", snapshot, result)
    return result


def _implicit_labels(model: LabelModel, L: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """What the implicit signals alone say: the label model with the explicit columns hidden."""
    implicit = L.copy()
    explicit_cols = [j for j, n in enumerate(names) if n in EXPLICIT_LF_NAMES]
    implicit[:, explicit_cols] = ABSTAIN
    has_vote = (implicit != ABSTAIN).any(axis=1)
    return np.where(has_vote, model.predict_proba(implicit).argmax(axis=1), ABSTAIN)


def _cleanlab(labels: pl.DataFrame, options: LabelerOptions, say: Progress) -> pl.DataFrame:
    candidates = labels.filter(pl.col("label") != ABSTAIN)
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
