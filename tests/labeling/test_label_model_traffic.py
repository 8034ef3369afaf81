"""The label model on simulated traffic (no servers): it beats majority vote of the same labeling functions
against the simulator's hidden truth, and does not collapse when the signal rates are very different."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from flywheel_feedback.labeling.default_lfs import default_registry
from flywheel_feedback.labeling.features import EVENT_COLUMNS, interaction_features
from flywheel_feedback.labeling.label_model import LabelModel, majority_vote
from flywheel_feedback.services.capture.validate import check_message
from flywheel_feedback.services.lake.events import events_frame
from flywheel_feedback.services.simulator.traffic import SimulationConfig, generate


def label_matrix(config: SimulationConfig) -> tuple[np.ndarray, np.ndarray]:
    lines, truth = [], []
    for event, t in generate(config):
        line = check_message(json.dumps(event).encode(), max_bytes=1 << 20)
        assert isinstance(line, bytes)
        lines.append(line)
        if t is not None:
            truth.append((t.interaction_id, t.good))
    events = events_frame(lines, topic="sim", partition=0, offsets=list(range(len(lines)))).select(EVENT_COLUMNS)
    features = interaction_features(events)
    L, _ = default_registry().apply(features)
    hidden = pl.DataFrame(truth, schema={"interaction_id": pl.String, "good": pl.Boolean}, orient="row")
    gold = features.join(hidden, on="interaction_id", how="left").get_column("good").cast(pl.Int64).to_numpy()
    return np.asarray(L, dtype=np.int64), gold


@pytest.mark.parametrize(
    "config",
    [
        SimulationConfig(interactions=3_000, seed=5),
        SimulationConfig(interactions=3_000, seed=5, rating_rate=0.0, copy_scale=0.1, edit_scale=2.0),
    ],
    ids=["default", "copies-rare-edits-common-no-ratings"],
)
def test_beats_majority_vote_and_does_not_collapse(config: SimulationConfig) -> None:
    L, gold = label_matrix(config)
    model = LabelModel(2).fit(L)
    ours = model.predict(L)
    voted = majority_vote(L, 2)
    assert (ours == gold).mean() > (voted == gold).mean()
    assert 0.05 < model.class_balance_[1] < 0.95
    assert abs(ours.mean() - gold.mean()) < 0.25
