"""The labeler over a real lake: traffic simulated, sent through Kafka, captured, labeled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from flywheel_feedback.client import Emitter
from flywheel_feedback.services.annotation.outbox import read_items
from flywheel_feedback.services.capture.file_source import capture_file
from flywheel_feedback.services.labeler import pipeline
from flywheel_feedback.services.labeler.pipeline import LabelerOptions, label_pass
from flywheel_feedback.services.lake.labels import read_labels
from flywheel_feedback.services.lake.store import LocalStore, ObjectStore, S3Store
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig, generate

from .kafka_helpers import capture_settings, capture_until, lake_count


def outbox(store: ObjectStore) -> pl.DataFrame:
    return read_items(store)


def assert_each_item_once_per_queue(store: ObjectStore) -> None:
    items = outbox(store)
    assert items.height > 0
    assert items.select("interaction_id", "queue").is_duplicated().sum() == 0


@pytest.mark.kafka
def test_a_pass_over_captured_traffic_then_a_pass_that_changes_nothing(
    kafka_bootstrap: str, kafka_topic: str, tmp_path: Path
) -> None:
    sent = 0
    with Emitter(kafka_bootstrap, topic=kafka_topic) as emitter:
        for event, _ in generate(SimulationConfig(interactions=1500, seed=3)):
            emitter.send_raw(json.dumps(event).encode(), key=event["interaction_id"].encode())
            sent += 1
    lake = tmp_path / "lake"
    store = LocalStore(lake)
    settings = capture_settings(kafka_bootstrap, kafka_topic, str(lake))
    # duplicates in the traffic are removed by event_id, so fewer than `sent` land
    capture_until(settings, store, lambda: lake_count(store) >= sent * 0.98, timeout_s=90)

    first = label_pass(store, options=LabelerOptions(folds=3))
    assert first.changed and first.interactions >= 1500
    labels = read_labels(store)
    assert labels is not None and labels.get_column("interaction_id").is_unique().all()
    assert set(labels.get_column("label_model_version")) == {first.label_model_version}
    assert set(labels.get_column("lf_fingerprint")) == {first.lf_fingerprint}
    assert_each_item_once_per_queue(store)
    assert set(outbox(store).get_column("source")) == {f"labeler:{first.snapshot}"}
    files_before = {k: store.get(k) for k in store.list("labels") + store.list("outbox")}

    second = label_pass(store, options=LabelerOptions(folds=3))
    assert not second.changed
    assert {k: store.get(k) for k in store.list("labels") + store.list("outbox")} == files_before


def test_a_pass_that_dies_after_its_labels_commit_is_completed_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = tmp_path / "events.jsonl"
    simulate_to_file(SimulationConfig(interactions=800, seed=5), events, tmp_path / "truth.parquet")
    lines = events.read_bytes().splitlines(keepends=True)
    first_half = tmp_path / "first.jsonl"
    first_half.write_bytes(b"".join(lines[: len(lines) // 2]))
    lakes = [LocalStore(tmp_path / "crashed"), LocalStore(tmp_path / "clean")]
    for store in lakes:
        capture_file(first_half, store)
        label_pass(store, options=LabelerOptions(folds=3))
        capture_file(events, store)
    crashed, clean = lakes
    # the crashed lake's second pass dies after merging its labels, before the derived tables
    with monkeypatch.context() as patched:
        def die(*args: object, **kwargs: object) -> None:
            raise RuntimeError("killed after the labels commit")

        patched.setattr(pipeline, "enqueue", die)
        with pytest.raises(RuntimeError, match="killed"):
            label_pass(crashed, options=LabelerOptions(folds=3))
    resumed = label_pass(crashed, options=LabelerOptions(folds=3))
    assert resumed.changed and resumed.mode == "finish"
    label_pass(clean, options=LabelerOptions(folds=3))
    assert not label_pass(crashed, options=LabelerOptions(folds=3)).changed
    compared = ["interaction_id", "label", "confidence", "pattern", "is_issue"]
    a, b = read_labels(crashed, columns=compared), read_labels(clean, columns=compared)
    assert a is not None and b is not None
    assert a.sort("interaction_id").equals(b.sort("interaction_id"))
    assert outbox(crashed).select("interaction_id", "queue").sort(pl.all()).equals(
        outbox(clean).select("interaction_id", "queue").sort(pl.all()))


def test_new_events_are_labeled_and_nothing_is_queued_twice(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    simulate_to_file(SimulationConfig(interactions=1200, seed=9), events, tmp_path / "truth.parquet")
    lines = events.read_bytes().splitlines(keepends=True)
    half = tmp_path / "first-half.jsonl"
    half.write_bytes(b"".join(lines[: len(lines) // 2]))
    store = LocalStore(tmp_path / "lake")
    capture_file(half, store)
    first = label_pass(store, options=LabelerOptions(folds=3))
    capture_file(events, store)  # the rest arrives, late events included
    second = label_pass(store, options=LabelerOptions(folds=3))
    assert second.changed and second.snapshot != first.snapshot and second.mode == "incremental"
    labels = read_labels(store, columns=["interaction_id"])
    assert labels is not None and labels.height > first.interactions
    assert labels.get_column("interaction_id").is_unique().all()
    assert_each_item_once_per_queue(store)


def test_the_label_model_beats_majority_vote_and_cleanlab_finds_real_mistakes(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    truth_path = tmp_path / "truth.parquet"
    simulate_to_file(SimulationConfig(interactions=6000, seed=21), events, truth_path)
    store = LocalStore(tmp_path / "lake")
    capture_file(events, store)
    label_pass(store)
    labels = read_labels(store)
    assert labels is not None
    scored = labels.join(pl.read_parquet(truth_path).select("interaction_id", "good"), on="interaction_id")
    truth = scored.get_column("good").cast(pl.Int64)
    from flywheel_feedback.labeling.default_lfs import default_registry
    from flywheel_feedback.labeling.label_model import majority_vote

    L, _ = default_registry().apply(scored)
    mv = pl.Series(majority_vote(L, cardinality=2))
    good = truth.to_numpy()
    assert np.mean(scored.get_column("label").to_numpy() == good) > np.mean(mv.to_numpy() == good)
    wrong = scored.get_column("weak_label").to_numpy() != good
    flagged = scored.get_column("is_issue").to_numpy()
    assert flagged.sum() > 0
    assert wrong[flagged].mean() >= 2 * wrong.mean()


@pytest.mark.s3
def test_a_pass_over_a_lake_on_s3(tmp_path: Path, s3_url: str, s3_options: dict[str, Any]) -> None:
    events = tmp_path / "events.jsonl"
    simulate_to_file(SimulationConfig(interactions=600, seed=4), events, tmp_path / "truth.parquet")
    store = S3Store(s3_url, **s3_options)
    capture_file(events, store)
    first = label_pass(store, options=LabelerOptions(folds=3))
    assert first.changed and first.interactions >= 600
    assert not label_pass(store, options=LabelerOptions(folds=3)).changed
    assert_each_item_once_per_queue(store)


def test_a_degenerate_fit_labels_by_weighted_majority_vote_visibly_and_audits_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functools import partial

    from flywheel_feedback.labeling.label_model import LabelModel
    from flywheel_feedback.services.lake.labels import read_labeler_state, read_lf_summary

    events = tmp_path / "events.jsonl"
    simulate_to_file(SimulationConfig(interactions=1500, seed=8), events, tmp_path / "truth.parquet")
    lakes = {name: LocalStore(tmp_path / name) for name in ("normal", "degenerate")}
    for store in lakes.values():
        capture_file(events, store)
    normal = label_pass(lakes["normal"], options=LabelerOptions(folds=3))
    # EM that cannot converge in one step is a degenerate fit: the guard must take over, and say so
    monkeypatch.setattr(pipeline, "LabelModel", partial(LabelModel, max_iter=1, tol=1e-12))
    degenerate = label_pass(lakes["degenerate"], options=LabelerOptions(folds=3))
    assert normal.label_model_fallback is None
    assert degenerate.label_model_fallback is not None and "convergence" in degenerate.label_model_fallback
    summary = read_lf_summary(lakes["degenerate"])
    assert summary is not None and set(summary.get_column("label_model_fallback")) == {degenerate.label_model_fallback}
    assert read_labeler_state(lakes["degenerate"])["label_model_fallback"] == degenerate.label_model_fallback
    # still labels (weighted majority vote), and audits five times as much
    labels = read_labels(lakes["degenerate"], columns=["label", "covered"])
    assert labels is not None and labels.filter(pl.col("covered")).get_column("label").n_unique() == 2
    assert degenerate.queued.get("audit", 0) >= 3 * normal.queued.get("audit", 0) > 0


def test_a_queue_budget_caps_what_waits_in_the_queue_not_what_each_pass_adds(tmp_path: Path) -> None:
    from flywheel_feedback.labeling.routing import RoutingConfig
    from flywheel_feedback.services.annotation.outbox import read_items

    events = tmp_path / "events.jsonl"
    simulate_to_file(SimulationConfig(interactions=2000, seed=12), events, tmp_path / "truth.parquet")
    lines = events.read_bytes().splitlines(keepends=True)
    store = LocalStore(tmp_path / "lake")
    options = LabelerOptions(folds=3, routing=RoutingConfig(audit_rate=0.0, budgets={"uncertain": 30}))
    for k in range(3):
        part = tmp_path / f"part-{k}.jsonl"
        part.write_bytes(b"".join(lines[k * len(lines) // 3:(k + 1) * len(lines) // 3]))
        capture_file(part, store)
        label_pass(store, options=options)
    # three passes, each with uncertain items to offer: the queue holds its cap, not three times it
    uncertain = read_items(store).filter(pl.col("queue") == "uncertain")
    assert uncertain.height == 30
