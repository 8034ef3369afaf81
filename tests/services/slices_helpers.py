"""A lake whose traffic drifts, for the slice tests: simulated, captured in two halves, labeled, with gold.

The simulator's events are split at the drift point (the first interaction served by a new model version).
The first half is captured and labeled, annotators' answers land for a share of its interactions (some with
a correction holding planted personal data), and labeling runs again; then the same for the second half.
Callers build a slice version between the halves.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from flywheel_feedback.services.annotation.gold import GoldResponse, land
from flywheel_feedback.services.capture.file_source import capture_file
from flywheel_feedback.services.labeler.pipeline import LabelerOptions, label_pass
from flywheel_feedback.services.lake.store import ObjectStore
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig

PLANTED = (
    "Reach me at ann.smith{n}@corp-mail.example.org if unclear.",
    "My phone is +44 20 7946 {n:04d}, card 5500 0000 0000 {n:04d}.",
    "Use the key sk-live-{n:04d}ZZtopSecretKeyValue99 to check.",
)
DEFINITION = """\
name = "{name}"
tasks = ["reply-draft"]
size = {size}
strata = ["task", "segment", "model_version", "topic_cluster"]
min_gold_share = 0.05
min_confidence = 0.8
max_age = "14d"
window = "24h"
drift_threshold = 0.05
clusters = 24
renewal_budget = 300
"""


@dataclass(frozen=True)
class DriftedTraffic:
    first: Path  # events before the drift point (JSON lines)
    second: Path  # the rest
    truth: pl.DataFrame
    drift_at: datetime


def simulate_drift(folder: Path, *, interactions: int = 4000, seed: int = 11) -> DriftedTraffic:
    folder.mkdir(parents=True, exist_ok=True)
    events, truth_path = folder / "events.jsonl", folder / "truth.parquet"
    simulate_to_file(SimulationConfig(interactions=interactions, seed=seed, drift=True), events, truth_path)
    truth = pl.read_parquet(truth_path)
    drift_at = truth.filter(pl.col("model_version") == "2026-11-15").get_column("ts").min()
    assert isinstance(drift_at, datetime)
    first, second = folder / "first.jsonl", folder / "second.jsonl"
    with events.open("rb") as f, first.open("wb") as a, second.open("wb") as b:
        for line in f:
            ts = datetime.fromisoformat(json.loads(line)["ts"].replace("Z", "+00:00"))
            (a if ts < drift_at else b).write(line)
    return DriftedTraffic(first, second, truth, drift_at)


def land_gold(store: ObjectStore, truth: pl.DataFrame, *, share: float, seed: int, tag: str) -> int:
    """Annotators' answers (the hidden truth) for a share of the captured interactions; a third of them
    with a correction that holds planted personal data. Returns how many landed."""
    rng = random.Random(seed)
    captured = truth.filter(pl.col("task") == "reply-draft")
    responses = []
    for n, (iid, good) in enumerate(captured.select("interaction_id", "good").iter_rows()):
        if rng.random() >= share:
            continue
        correction = None
        if not good or n % 3 == 0:
            correction = "Open Settings > Privacy to finish this. " + PLANTED[n % 3].format(n=n % 10_000)
        responses.append(GoldResponse(
            interaction_id=iid, queue="audit", dataset="flywheel-audit", annotator="ann-1", annotator_id="u-1",
            label=int(good), correction=correction, submitted_at=datetime(2026, 11, 20, tzinfo=UTC)
            + timedelta(seconds=n), response_id=f"{tag}-r{n}", source="reconcile",
        ))
    land(store, responses)
    return len(responses)


def capture_and_label(store: ObjectStore, events: Path, truth: pl.DataFrame, *, gold_share: float, seed: int,
                      tag: str) -> None:
    """Capture `events`, label, land gold for a share of `truth` (the interactions in those events), relabel."""
    capture_file(events, store)
    label_pass(store, options=LabelerOptions(folds=3))
    land_gold(store, truth, share=gold_share, seed=seed, tag=tag)
    label_pass(store, options=LabelerOptions(folds=3))


def write_definition(folder: Path, name: str, *, size: int = 400, **overrides: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = DEFINITION.format(name=name, size=size)
    for key, value in overrides.items():
        text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{key} ="))
        text += f"\n{key} = {json.dumps(value)}\n"
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def copy_lake(source: ObjectStore, target: ObjectStore, prefixes: tuple[str, ...] = ("raw", "labels", "gold",
                                                                                      "state", "outbox")) -> None:
    for prefix in prefixes:
        for key in source.list(prefix):
            target.put(key, source.get(key))
