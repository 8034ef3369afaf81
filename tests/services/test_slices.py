"""Eval slices over a lake whose traffic drifts (local disk): build, renew, diff, the renewal queue, exports,
immutability and time travel, PII. The S3 and Kafka paths are in test_slices_s3_kafka.py; concurrent publishers
in test_slices_versions.py."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from flywheel_feedback.labeling.conversations import MESSAGES
from flywheel_feedback.labeling.pii import find_pii
from flywheel_feedback.services.annotation.gold import gold_version
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.labels import labels_version, read_labels
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.lake.tables import RAW_EVENTS
from flywheel_feedback.services.slices import load_export, load_slice, versions
from flywheel_feedback.services.slices.api import diff
from flywheel_feedback.services.slices.build import RenewalResult, check_drift, renew
from flywheel_feedback.services.slices.definitions import SliceDefinition, find_definition
from flywheel_feedback.services.slices.exports import export, read_jsonl
from flywheel_feedback.services.slices.queue import read_renewal_queue, renewal_source
from flywheel_feedback.services.slices.versions import (
    DATA,
    IntegrityError,
    VersionExistsError,
    list_versions,
    open_version,
    publish,
    read_file,
    read_manifest,
    sha256,
    slice_root,
    verify_version,
)
from tests.chat_formats import openai_chat_problems

from .slices_helpers import capture_and_label, simulate_drift, write_definition

NAME = "support-reply-test"


@dataclass(frozen=True)
class Base:
    lake: Path  # v1 built from the first half; both halves captured and labeled
    definitions: Path
    truth: pl.DataFrame
    v1: pl.DataFrame  # v1's rows as renew built them
    v1_data: bytes  # its data file's bytes


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("slices-base")
    traffic = simulate_drift(root / "traffic")
    store = LocalStore(root / "lake")
    before = pl.col("ts") < traffic.drift_at
    capture_and_label(store, traffic.first, traffic.truth.filter(before), gold_share=0.08, seed=1, tag="first")
    write_definition(root / "slices", NAME)
    first = renew(store, find_definition(root / "slices", NAME))
    assert first.published and first.version == 1 and first.reason == "first version"
    capture_and_label(store, traffic.second, traffic.truth.filter(~before), gold_share=0.08, seed=2, tag="second")
    assert first.data is not None
    v1_data = read_file(store, open_version(store, slice_root(NAME), 1), DATA)
    return Base(root / "lake", root / "slices", traffic.truth, first.data, v1_data)


def copy_of(base: Base, dest: Path) -> LocalStore:
    shutil.copytree(base.lake, dest)
    return LocalStore(dest)


def definition(base: Base) -> SliceDefinition:
    return find_definition(base.definitions, NAME)


@pytest.fixture(scope="module")
def renewed(base: Base, tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, RenewalResult]:
    store = copy_of(base, tmp_path_factory.mktemp("renewed") / "lake")
    return store, renew(store, definition(base))


def test_renewal_reports_the_drift_and_the_clusters_of_the_new_topic(
    base: Base, renewed: tuple[LocalStore, RenewalResult]
) -> None:
    store, result = renewed
    before = result.drift_before
    assert before is not None and result.published and result.version == 2
    print(f"\ndivergence before {before.by_dimension}, uncovered {[g.name for g in before.uncovered]}")
    assert before.drifted and before.divergence > 0.05
    assert before.by_dimension["topic_cluster"] > 0.05  # the topic mix alone has moved, not only model versions
    assert before.uncovered
    # the uncovered clusters are the new topic's: map recent interactions of those clusters to the hidden topic
    v2 = load_slice(NAME, lake=store)
    uncovered = {g.cluster for g in before.uncovered}
    topics = v2.filter(pl.col("topic_cluster").is_in(list(uncovered))).join(
        base.truth.select("interaction_id", pl.col("topic").alias("true_topic")), on="interaction_id"
    ).get_column("true_topic")
    assert topics.len() > 0 and topics.to_list().count("account-deletion") > 0.9 * topics.len()


def test_the_new_version_mixes_like_recent_traffic(base: Base, renewed: tuple[LocalStore, RenewalResult]) -> None:
    store, result = renewed
    assert result.drift_before is not None and result.drift_after is not None
    before, after = result.drift_before.by_dimension, result.drift_after.by_dimension
    print(f"\ncluster divergence before {before['topic_cluster']:.4f} after {after['topic_cluster']:.4f}; "
          f"worst dimension before {result.drift_before.divergence:.4f} after {result.drift_after.divergence:.4f}")
    assert after["topic_cluster"] < 0.02 and after["topic_cluster"] < before["topic_cluster"] / 10
    assert not result.drift_after.drifted and not result.drift_after.uncovered
    # measured afresh (a new clustering over v2 and traffic), v2 is fresh
    again = check_drift(store, definition(base))
    assert again is not None and not again.stale
    manifest = read_manifest(store, slice_root(NAME), 2)
    assert manifest["drift"]["before"]["divergence"] == pytest.approx(result.drift_before.divergence, abs=1e-6)
    assert manifest["drift"]["after"]["by_dimension"]["topic_cluster"] == pytest.approx(after["topic_cluster"],
                                                                                         abs=1e-6)


def test_the_old_version_stays_intact_and_verifies(base: Base, renewed: tuple[LocalStore, RenewalResult]) -> None:
    store, _ = renewed
    v1 = open_version(store, slice_root(NAME), 1)
    assert read_file(store, v1, DATA) == base.v1_data
    assert f"sha256:{sha256(base.v1_data)}" == v1.manifest["content_hash"]
    # time travel: after v2's commit, v1 reads exactly the rows it was published with, at its own Delta version
    assert load_slice(NAME, 1, lake=store).equals(base.v1)
    assert v1.table_version == v1.manifest["table"]["version"] < open_version(store, slice_root(NAME), 2).table_version
    assert verify_version(store, slice_root(NAME), 1) == []
    assert verify_version(store, slice_root(NAME), 2) == []
    v1_manifest = read_manifest(store, slice_root(NAME), 1)
    v2_manifest = read_manifest(store, slice_root(NAME), 2)
    assert v2_manifest["parent"] == {"version": 1, "content_hash": v1_manifest["content_hash"]}
    assert load_slice(NAME, 1, lake=store).height == v1_manifest["rows"]


def test_a_version_records_its_lineage(renewed: tuple[LocalStore, RenewalResult]) -> None:
    store, _ = renewed
    manifest = read_manifest(store, slice_root(NAME), 2)
    labels = read_labels(store)
    assert labels is not None
    # the Delta versions of the tables read (nothing was written to them since)
    assert manifest["source"]["tables"] == {"raw_events": delta.table_version(store, RAW_EVENTS),
                                            "labels": labels_version(store), "gold": gold_version(store)}
    assert manifest["source"]["tables"]["raw_events"] is not None
    assert manifest["table"] == {"name": f"slices/{NAME}", "version": open_version(store, slice_root(NAME), 2)
                                 .table_version}
    assert manifest["source"]["lake_snapshots"] == sorted(set(labels.get_column("snapshot")))
    ranges = manifest["source"]["event_ranges"]
    assert ranges["table_version"] is not None and ranges["partitions"][0]["first_offset"] == 0
    assert manifest["labeling"]["lf_fingerprints"] == sorted(set(labels.get_column("lf_fingerprint")))
    assert manifest["labeling"]["label_model_versions"]
    assert set(manifest["model_versions"]) >= {"support-llm@2026-11-15"}
    assert sum(manifest["counts"]["by_stratum"].values()) == manifest["rows"]
    assert manifest["changes"]["kept"] + manifest["changes"]["added"] == manifest["rows"]
    data = load_slice(NAME, lake=store)
    assert data.get_column("interaction_id").is_unique().all()
    assert manifest["gold_share"] >= 0.05 and manifest["gold_share_met"]
    # human gold first, then weak labels, and only confident ones
    weak = data.filter(pl.col("is_weak"))
    assert weak.get_column("confidence").ge(0.8).all()
    assert set(data.get_column("label_source")) == {"human", "weak"}


def test_diff_lists_added_and_retired_items(renewed: tuple[LocalStore, RenewalResult]) -> None:
    store, result = renewed
    changes = diff(store, NAME, 1, 2)
    v1, v2 = (set(load_slice(NAME, v, lake=store).get_column("interaction_id")) for v in (1, 2))
    assert set(changes.added.get_column("interaction_id")) == v2 - v1
    assert set(changes.retired.get_column("interaction_id")) == v1 - v2
    assert changes.kept == len(v1 & v2) == result.kept
    assert changes.retired.height == result.retired and changes.added.height == result.added
    assert not changes.retired.get_column("reason").str.starts_with("not in").any()
    assert changes.by_cluster.select(pl.col("v1").sum()).item() == len(v1)


def test_the_gaps_are_in_the_renewal_queue_once(renewed: tuple[LocalStore, RenewalResult], base: Base) -> None:
    store, result = renewed
    queue = read_renewal_queue(store)
    assert result.queued > 0 and queue.height >= result.queued
    assert queue.get_column("interaction_id").is_unique().all()
    ours = queue.filter(pl.col("source") == renewal_source(NAME, 2))
    assert ours.height == result.queued and set(ours.get_column("queue")) == {"renewal"}
    assert result.manifest is not None
    assert result.manifest["renewal_queue"] == {"table": "outbox/items", "source": f"renewal:{NAME}/v2",
                                                "items": result.queued}
    assert result.drift_before is not None
    uncovered = [g.cluster for g in result.drift_before.uncovered]
    v2 = load_slice(NAME, lake=store)
    gaps = v2.filter(pl.col("topic_cluster").is_in(uncovered) & pl.col("is_weak")).get_column("interaction_id")
    assert set(gaps) <= set(queue.get_column("interaction_id"))
    labels = read_labels(store)
    assert labels is not None and set(ours.get_column("interaction_id")) <= set(labels.get_column("interaction_id"))
    # a renewal of a fresh slice publishes nothing and queues nothing
    again = renew(store, definition(base))
    assert not again.renewed and again.version == 2
    assert read_renewal_queue(store).height == queue.height


def test_a_forced_renewal_never_queues_an_item_twice(base: Base, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = copy_of(base, tmp_path / "lake")
    from_v1 = read_renewal_queue(store).height
    second = renew(store, definition(base))

    # a renewal that dies before its commit publishes nothing (its queue file is written already)
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed before the commit")

    with monkeypatch.context() as patched:
        patched.setattr(versions, "commit", crash)
        with pytest.raises(RuntimeError, match="killed"):
            renew(store, definition(base), force=True)
    assert list_versions(store, slice_root(NAME)) == [1, 2]
    crashed = read_renewal_queue(store).height
    # rerun, it proposes the same version and rewrites the same queue file
    third = renew(store, definition(base), force=True)
    assert third.published and third.version == 3 and third.reason == "forced"
    queue = read_renewal_queue(store)
    assert queue.get_column("interaction_id").is_unique().all()
    assert queue.height == from_v1 + second.queued + third.queued == crashed


def string_values(frame: pl.DataFrame) -> list[str]:
    """Every distinct text of the frame: its string columns and the contents of its conversations."""
    flat = frame.select(pl.col(pl.String)).unpivot().get_column("value").drop_nulls()
    contents = [frame.get_column(c).explode().struct.field("content") for c, t in frame.schema.items()
                if t == MESSAGES]
    return pl.concat([flat, *contents]).drop_nulls().unique().to_list()


def test_no_planted_pii_reaches_a_slice_or_an_export(renewed: tuple[LocalStore, RenewalResult]) -> None:
    store, _ = renewed
    # the raw events keep what was sent; the labels hold it masked already
    prompts = delta.scan(store, RAW_EVENTS).select(pl.col("input").struct.field("prompt")).collect()
    planted = [t for t in string_values(prompts) if find_pii(t)]
    assert planted, "the simulator plants personal data in prompts: the test needs some"
    labels = read_labels(store, columns=["input_text", "output_text", "edited_text", "correction_text"])
    assert labels is not None and not [t for t in string_values(labels) if find_pii(t, engine="fast")]
    outputs = []
    for version in (1, 2):
        outputs.append(load_slice(NAME, version, lake=store))
    for kind in ("sft", "preference", "classifier"):
        result = export(store, kind)
        assert result.published and result.manifest is not None
        outputs.append(load_export(kind, lake=store))
        assert result.version is not None
        for line in read_jsonl(store, kind, result.version).splitlines():
            record = json.loads(line)
            texts = [m["content"] for k in ("messages", "prompt", "chosen", "rejected") for m in record.get(k, [])]
            texts += [record[k] for k in ("text",) if k in record]
            assert texts and not [t for t in texts if find_pii(t)], (kind, record.get("pair_id"),
                                                                     record.get("interaction_id"))
    # ids are UUIDs, which look like phone numbers to the detector: check the text columns
    ids = ("interaction_id", "pair_id", "chosen_interaction_id", "stratum")
    leaks = [t for frame in outputs for t in string_values(frame.drop(ids, strict=False)) if find_pii(t)]
    assert leaks == []
    # the planted corrections did reach the slice, masked
    refs = outputs[1].get_column("reference_output").drop_nulls()
    assert refs.str.contains(r"\[(EMAIL|PHONE|CARD|KEY|SECRET)_\d+\]").any()


def test_exports_pair_different_texts_hold_out_eval_items_and_record_lineage(
    renewed: tuple[LocalStore, RenewalResult]
) -> None:
    store, _ = renewed
    pairs = export(store, "preference")
    frame = pairs.data
    assert frame.height > 0
    norm = [pl.col(c).list.first().struct.field("content").str.replace_all(r"\s+", " ").str.strip_chars()
            for c in ("chosen", "rejected")]
    assert frame.select((norm[0] != norm[1]).all()).item()
    assert {"annotator_correction", "user_edit", "accepted_regeneration"} <= set(frame.get_column("source"))
    sft = export(store, "sft")
    v2_ids = load_slice(NAME, lake=store).get_column("interaction_id")
    for result in (pairs, sft):
        assert result.manifest is not None
        assert result.manifest["excluded_slices"] == {NAME: 2}
        assert result.manifest["excluded_interactions"] >= v2_ids.len()
        assert not result.data.get_column("interaction_id").is_in(v2_ids.implode()).any()
        assert result.manifest["labeling"]["lf_fingerprints"] and result.manifest["source"]["lake_snapshots"]
    sft_lines = [json.loads(line) for line in io.BytesIO(read_jsonl(store, "sft", 1)).read().splitlines()]
    assert sft_lines and all(openai_chat_problems(line) == [] for line in sft_lines)
    assert all(list(line) == sft.data.columns for line in sft_lines), (list(sft_lines[0]), sft.data.columns)
    later = export(store, "sft")
    assert later.manifest is not None and later.manifest["parent"]["version"] == sft.version
    # time travel: the earlier export still reads exactly what it was built from
    assert sft.version is not None and sft.manifest is not None
    assert load_export("sft", sft.version, lake=store).equals(sft.data)
    earlier = open_version(store, "exports/sft", sft.version)
    assert f"sha256:{sha256(read_file(store, earlier, DATA))}" == sft.manifest["content_hash"]
    assert earlier.table_version < open_version(store, "exports/sft").table_version


def test_versions_are_immutable_and_tampering_is_detected(base: Base, tmp_path: Path) -> None:
    store = copy_of(base, tmp_path / "lake")
    root = slice_root(NAME)
    frame = load_slice(NAME, lake=store)
    with pytest.raises(VersionExistsError, match=f"slice {NAME} v1 is already published.*immutable"):
        publish(store, root, 1, {DATA: frame.head(3)}, {"name": NAME})
    v1 = open_version(store, root, 1)
    assert read_file(store, v1, DATA) == base.v1_data
    frame.with_columns(pl.lit(1).alias("label")).write_parquet(store.root / v1.files[DATA])
    with pytest.raises(IntegrityError, match="does not match its manifest"):
        load_slice(NAME, lake=store)
    assert verify_version(store, root, 1)
    with pytest.raises(IntegrityError):
        renew(store, definition(base))  # a renewal starts from a verified parent


def test_age_a_changed_definition_and_dry_runs(base: Base, tmp_path: Path) -> None:
    store = copy_of(base, tmp_path / "lake")
    folder = tmp_path / "slices"
    name = "aging"
    write_definition(folder, name, drift_threshold=1.0, max_age="6h", window="12h")
    aging = find_definition(folder, name)
    truth_start = base.truth.get_column("ts").min()
    assert isinstance(truth_start, datetime)
    first = renew(store, aging, as_of=truth_start + timedelta(hours=20))
    assert first.version == 1
    fresh = renew(store, aging, as_of=truth_start + timedelta(hours=22))
    assert not fresh.renewed
    old = renew(store, aging, as_of=truth_start + timedelta(hours=30), dry_run=True)
    assert old.renewed and not old.published and old.reason.startswith("age")
    assert old.drift_before is not None and old.drift_before.too_old
    assert old.retired_by_reason.get("older than the slice's max age", 0) > 0
    assert list_versions(store, slice_root(name)) == [1] and store.list(f"slices/{name}/version=2") == []
    assert read_renewal_queue(store).filter(pl.col("source") == renewal_source(name, 2)).is_empty()
    write_definition(folder, name, drift_threshold=1.0, max_age="6h", window="12h", size=300)
    redefined = renew(store, find_definition(folder, name), as_of=truth_start + timedelta(hours=22))
    assert redefined.published and redefined.reason == "definition changed"
