"""Slices and exports against the real servers: publish to S3, pull from it, announce on Kafka (and catch up
on announcements an outage missed). Every test has its own bucket prefix and topic."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from kafka import KafkaConsumer

from flywheel_feedback.services.lake.store import LocalStore, open_store
from flywheel_feedback.services.settings import KafkaSettings
from flywheel_feedback.services.slices import load_export, load_slice
from flywheel_feedback.services.slices.announce import KafkaAnnouncer, announce_pending, unannounced
from flywheel_feedback.services.slices.api import pull
from flywheel_feedback.services.slices.build import renew
from flywheel_feedback.services.slices.definitions import SliceDefinition, find_definition
from flywheel_feedback.services.slices.exports import export
from flywheel_feedback.services.slices.queue import read_renewal_queue
from flywheel_feedback.services.slices.versions import (
    DATA,
    IntegrityError,
    VersionExistsError,
    open_version,
    publish,
    read_manifest,
    sha256,
    slice_root,
    verify_version,
)

from .slices_helpers import DriftedTraffic, capture_and_label, copy_lake, simulate_drift, write_definition

NAME = "s3-slice"


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DriftedTraffic, SliceDefinition]:
    """A local lake with both halves captured and labeled (nothing published), to copy from."""
    root = tmp_path_factory.mktemp("slices-s3")
    traffic = simulate_drift(root / "traffic", interactions=2500, seed=21)
    store = LocalStore(root / "lake")
    before = pl.col("ts") < traffic.drift_at
    capture_and_label(store, traffic.first, traffic.truth.filter(before), gold_share=0.08, seed=3, tag="a")
    capture_and_label(store, traffic.second, traffic.truth.filter(~before), gold_share=0.08, seed=4, tag="b")
    write_definition(root / "slices", NAME, size=300)
    return root / "lake", traffic, find_definition(root / "slices", NAME)


def consume(bootstrap: str, topic: str, n: int, *, timeout_s: float = 60.0) -> list[Any]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < n and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        # anything beyond n would be a duplicate announcement
        for batch in consumer.poll(timeout_ms=2000).values():
            records.extend(batch)
    finally:
        consumer.close()
    return records


@pytest.mark.s3
@pytest.mark.kafka
def test_publish_to_s3_announce_on_kafka_then_pull(
    drifted: tuple[Path, DriftedTraffic, SliceDefinition],
    s3_url: str,
    s3_options: dict[str, str],
    kafka_bootstrap: str,
    kafka_topic: str,
    tmp_path: Path,
) -> None:
    local, traffic, definition = drifted
    s3 = open_store(s3_url, **s3_options)
    copy_lake(LocalStore(local), s3)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    with KafkaAnnouncer(kafka, topic=kafka_topic, timeout_s=30) as announcer:
        v1 = renew(s3, definition, as_of=traffic.drift_at, announcer=announcer)
        v2 = renew(s3, definition, announcer=announcer)
        sft = export(s3, "sft", announcer=announcer)
    assert v1.published and v2.published and sft.published
    assert v1.announced and v2.announced and sft.announced and unannounced(s3) == []
    assert v2.drift_before is not None and v2.drift_before.drifted and v2.drift_before.uncovered

    records = consume(kafka_bootstrap, kafka_topic, 3)
    assert len(records) == 3
    events = [(r.key.decode(), json.loads(r.value)) for r in records]
    slices = sorted((e for k, e in events if k == NAME), key=lambda e: e["version"])
    assert [e["version"] for e in slices] == [1, 2] and {e["type"] for e in slices} == {"slice.published"}
    for event in slices:
        manifest = read_manifest(s3, slice_root(NAME), event["version"])
        assert event["content_hash"] == manifest["content_hash"] and event["rows"] == manifest["rows"]
        assert event["lake"] == s3_url and event["table"] == f"{s3_url}/slices/{NAME}"
        assert event["table_version"] == manifest["table"]["version"] == open_version(
            s3, slice_root(NAME), event["version"]).table_version
    assert slices[1]["drift"]["before"]["uncovered"] and slices[1]["parent"]["version"] == 1
    assert slices[1]["drift"]["after"]["divergence"] < slices[1]["drift"]["before"]["divergence"]
    (export_key, export_event), = [(k, e) for k, e in events if k != NAME]
    assert export_key == "exports/sft" and export_event["type"] == "export.published"
    records_by_partition = {r.partition for r in records if r.key.decode() == NAME}
    assert len(records_by_partition) == 1  # one slice's versions stay in order on one partition

    assert v1.data is not None and v2.data is not None
    assert load_slice(NAME, lake=s3_url, s3_options=s3_options).equals(v2.data)
    assert load_slice(NAME, 1, lake=s3).equals(v1.data)
    assert load_export("sft", lake=s3).height == sft.rows
    assert verify_version(s3, slice_root(NAME), 1) == [] and verify_version(s3, slice_root(NAME), 2) == []
    paths = pull(s3, slice_root(NAME), 1, tmp_path)
    manifest = read_manifest(s3, slice_root(NAME), 1)
    assert sha256((tmp_path / f"slices/{NAME}/v1/data.parquet").read_bytes()) == manifest["files"]["data.parquet"][
        "sha256"]
    assert len(paths) == 2  # data and manifest (a first version retires nothing)

    queue = read_renewal_queue(s3)
    assert queue.height == v1.queued + v2.queued and queue.get_column("interaction_id").is_unique().all()

    with pytest.raises(VersionExistsError, match=f"slice {NAME} v2 is already published"):
        publish(s3, slice_root(NAME), 2, {DATA: v2.data.head(2)}, {})
    s3.put(open_version(s3, slice_root(NAME), 1).files[DATA], b"not the published bytes")
    with pytest.raises(IntegrityError):
        load_slice(NAME, 1, lake=s3)


@pytest.mark.kafka
def test_announcements_missed_in_an_outage_are_sent_later_once(
    drifted: tuple[Path, DriftedTraffic, SliceDefinition], kafka_bootstrap: str, kafka_topic: str, tmp_path: Path
) -> None:
    local, _, definition = drifted
    shutil.copytree(local, tmp_path / "lake")
    store = LocalStore(tmp_path / "lake")
    unreachable = KafkaSettings(bootstrap_servers="127.0.0.1:9")
    with KafkaAnnouncer(unreachable, topic=kafka_topic, timeout_s=2) as down:
        slice_v1 = renew(store, definition, announcer=down)
        classifier = export(store, "classifier", announcer=down)
    assert slice_v1.published and not slice_v1.announced and slice_v1.announce_error
    assert classifier.published and not classifier.announced and classifier.announce_error
    assert unannounced(store) == [(slice_root(NAME), 1), ("exports/classifier", 1)]

    with KafkaAnnouncer(KafkaSettings(bootstrap_servers=kafka_bootstrap), topic=kafka_topic) as up:
        sent = announce_pending(store, up)
        assert [e["type"] for e in sent] == ["slice.published", "export.published"]
        assert announce_pending(store, up) == []  # marked: not sent twice
    records = consume(kafka_bootstrap, kafka_topic, 2)
    assert sorted(r.key.decode() for r in records) == ["exports/classifier", NAME]
    assert {json.loads(r.value)["event_id"] for r in records} == {e["event_id"] for e in sent}
