"""Data retention: what is older than its time to live is gone after `optimize` (raw events, gold answers, dead
letters), nothing younger is touched, and the labeler goes on incrementally past the commits that deleted."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from typer.testing import CliRunner

from flywheel_feedback.services.annotation.gold import GoldResponse, land
from flywheel_feedback.services.capture.file_source import capture_file
from flywheel_feedback.services.cli import app
from flywheel_feedback.services.labeler.pipeline import LabelerOptions, label_pass
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.labels import read_labels
from flywheel_feedback.services.lake.maintenance import optimize_lake
from flywheel_feedback.services.lake.retention import RetentionPolicy
from flywheel_feedback.services.lake.store import LocalStore, ObjectStore
from flywheel_feedback.services.lake.tables import DEAD_LETTER_PREFIX, GOLD, RAW_EVENTS
from flywheel_feedback.services.serve.app import FlywheelServer, ServeSettings
from flywheel_feedback.services.settings import MaintenanceSettings
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig

OPTIONS = LabelerOptions(folds=3)
POSITION = ["kafka_topic", "kafka_partition", "kafka_offset"]


def traffic(folder: Path, *, start: datetime, parts: int = 2, interactions: int = 900) -> list[Path]:
    """Simulated events over 72 hours from `start`, in arrival order, cut into `parts` files."""
    events = folder / "events.jsonl"
    simulate_to_file(SimulationConfig(interactions=interactions, seed=5, hours=72, start=start, drift=False), events,
                     folder / "truth.parquet")
    lines = events.read_bytes().splitlines(keepends=True)
    step = -(-len(lines) // parts)
    paths = []
    for k in range(parts):
        path = folder / f"part-{k}.jsonl"
        path.write_bytes(b"".join(lines[k * step:(k + 1) * step]))
        paths.append(path)
    return paths


def raw_rows(store: ObjectStore) -> pl.DataFrame:
    return delta.scan(store, RAW_EVENTS).collect().sort(POSITION)


def commit_actions(store: ObjectStore, version: int) -> list[dict[str, Any]]:
    text = store.get(f"{RAW_EVENTS.name}/_delta_log/{version:020d}.json").decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_raw_events_past_their_ttl_go_nothing_younger_is_touched_and_the_labeler_goes_on(tmp_path: Path) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    first, second = traffic(tmp_path, start=start)
    store = LocalStore(tmp_path / "lake")
    capture_file(first, store)
    assert label_pass(store, options=OPTIONS).mode == "full"
    before, version = raw_rows(store), delta.table_version(store, RAW_EVENTS)
    assert version is not None
    index = delta.file_index(store, RAW_EVENTS)
    now = datetime(2026, 11, 6, tzinfo=UTC)
    cutoff = datetime(2026, 11, 2, tzinfo=UTC)  # midnight: the first day's files are wholly older

    result = optimize_lake(store, policy=RetentionPolicy(raw_events=now - cutoff), now=now)
    assert not result.failed
    old = before.filter(pl.col("ts") < cutoff)
    assert old.height > 100 and [e.rows for e in result.expired] == [old.height]
    assert raw_rows(store).equals(before.filter(pl.col("ts") >= cutoff))
    # the expiry is a commit of removes only, of the files wholly older than the cutoff
    actions = commit_actions(store, version + 1)
    assert actions[0]["commitInfo"]["operation"] == "DELETE" and not [a for a in actions if "add" in a]
    removed = {a["remove"]["path"] for a in actions if "remove" in a}
    older = set(index.filter(pl.col("max.ts") < cutoff).get_column("path"))
    assert removed == older and removed

    capture_file(second, store)
    passed = label_pass(store, options=OPTIONS)
    assert passed.mode == "incremental" and passed.interactions > 0
    labels = read_labels(store, columns=["interaction_id"])
    assert labels is not None
    served = raw_rows(store).filter(pl.col("type") == "interaction").get_column("interaction_id")
    assert served.is_in(labels.get_column("interaction_id").implode()).all()
    # a second run finds nothing more to expire, and the labeler has nothing to recompute (compaction: no new data)
    again = optimize_lake(store, policy=RetentionPolicy(raw_events=now - cutoff), now=now)
    assert [e.rows for e in again.expired] == [0]
    assert label_pass(store, options=OPTIONS).interactions == 0


def test_optimize_expires_raw_events_gold_and_dead_letters_by_the_settings(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    (events,) = traffic(tmp_path, start=now - timedelta(days=4), parts=1, interactions=300)
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b'{"type": "interaction"}\nnot json\n')
    store = LocalStore(tmp_path / "lake")
    capture_file(events, store)
    capture_file(broken, store)
    old_letters = store.list(f"{DEAD_LETTER_PREFIX}/")
    assert old_letters
    for key in old_letters:
        ten_days_ago = (now - timedelta(days=10)).timestamp()
        os.utime(store.root / key, (ten_days_ago, ten_days_ago))
    (tmp_path / "broken2.jsonl").write_bytes(b"still not json\n")
    capture_file(tmp_path / "broken2.jsonl", store)
    land(store, [
        GoldResponse(interaction_id=f"i{n}", queue="audit", dataset="flywheel-audit", annotator="a", annotator_id="a",
                     label=1, correction=None, submitted_at=now - timedelta(days=n), response_id=f"r{n}",
                     source="reconcile")
        for n in range(1, 9)
    ])
    before = raw_rows(store)
    env = {"FLYWHEEL_MAINTENANCE_RAW_EVENTS_TTL": "2d", "FLYWHEEL_MAINTENANCE_GOLD_TTL": "5d",
           "FLYWHEEL_MAINTENANCE_DEAD_LETTERS_TTL": "7d"}

    result = CliRunner().invoke(app, ["lake", "optimize", "--lake", str(store.root)], env=env)
    assert result.exit_code == 0, result.output
    assert "raw/events:" in result.output and "expired" in result.output
    cutoff = now - timedelta(days=2)
    kept = raw_rows(store)
    assert kept.get_column("ts").min() >= cutoff  # type: ignore[operator]
    younger = before.filter(pl.col("ts") >= cutoff + timedelta(minutes=5))  # the command's clock ran a bit later
    assert younger.height > 100
    assert kept.filter(pl.col("event_id").is_in(younger.get_column("event_id").implode())).equals(younger)
    gold = delta.scan(store, GOLD).collect()
    assert sorted(gold.get_column("response_id")) == ["r1", "r2", "r3", "r4"]
    left = store.list(f"{DEAD_LETTER_PREFIX}/")
    assert left and not set(left) & set(old_letters)


def test_serve_enforces_the_retention(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    (events,) = traffic(tmp_path, start=now - timedelta(days=4), parts=1, interactions=200)
    store = LocalStore(tmp_path / "lake")
    capture_file(events, store)
    settings = ServeSettings(maintenance=MaintenanceSettings(raw_events_ttl=timedelta(days=3)))
    stage = next(s for s in FlywheelServer(settings, store).stages() if s.name == "maintenance")
    stage.work()
    assert raw_rows(store).get_column("ts").min() >= now - timedelta(days=3)  # type: ignore[operator]
