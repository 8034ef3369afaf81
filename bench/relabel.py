"""Time to relabel 1M interactions: features, labeling functions, label model, then the cleanlab stage.

    python bench/relabel.py [--rows 1000000]

The events come from the simulator (realistic behaviour, hidden truth), tiled with fresh ids up to
the row count. The baseline, run in the same process, is the same labeling functions applied the
way row-wise appliers do it (a Python call per row) on a sample, scaled to the row count.
Ends with `RESULT relabel_core_s=<s> relabel_with_cleanlab_s=<s> rows=<n>`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl

from flywheel_feedback.labeling.confident import find_issues, out_of_fold_probs
from flywheel_feedback.labeling.default_lfs import default_registry
from flywheel_feedback.labeling.features import EVENT_COLUMNS, interaction_features
from flywheel_feedback.labeling.label_model import LabelModel, majority_vote
from flywheel_feedback.services.capture.validate import check_message
from flywheel_feedback.services.labeler.pipeline import CARDINALITY, SIGNAL_FEATURES
from flywheel_feedback.services.lake.events import events_frame
from flywheel_feedback.services.simulator.traffic import SimulationConfig, generate

REPO = Path(__file__).resolve().parent.parent

BASE_INTERACTIONS = 50_000


def simulated_events(rows: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    lines: list[bytes] = []
    truth: list[tuple[str, bool]] = []
    for event, t in generate(SimulationConfig(interactions=BASE_INTERACTIONS, seed=11)):
        line = check_message(json.dumps(event).encode(), max_bytes=1 << 20)
        assert isinstance(line, bytes)
        lines.append(line)
        if t is not None:
            truth.append((t.interaction_id, t.good))
    base = events_frame(lines, topic="sim", partition=0, offsets=list(range(len(lines))))
    base_truth = pl.DataFrame(truth, schema={"interaction_id": pl.String, "good": pl.Boolean}, orient="row")
    copies = -(-rows // base_truth.height)
    suffix = [f"~{c}" for c in range(copies)]
    events = pl.concat(
        [base.with_columns(pl.col("interaction_id") + s, pl.col("event_id") + s) for s in suffix]
    )
    truth_all = pl.concat([base_truth.with_columns(pl.col("interaction_id") + s) for s in suffix])
    keep = truth_all.head(rows)
    events = events.join(keep.select("interaction_id"), on="interaction_id", how="semi").select(EVENT_COLUMNS)
    return events, keep


def row_wise_baseline(features: pl.DataFrame, sample: int) -> float:
    """The same functions, one Python call per row and function, as a row-wise applier runs them."""
    registry = default_registry()
    rows = features.head(sample)
    started = time.perf_counter()
    votes = np.full((rows.height, len(registry)), -1, dtype=np.int8)
    for i, row in enumerate(rows.iter_rows(named=True)):
        one = pl.DataFrame([row], schema=rows.schema)
        for j, lf in enumerate(registry):
            out = lf(one)
            value = one.select(out).item() if isinstance(out, pl.Expr) else out.item()
            votes[i, j] = -1 if value is None else value
        if i == 200:
            break
    per_row = (time.perf_counter() - started) / 201
    return per_row * features.height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    print(f"simulating {BASE_INTERACTIONS} interactions and tiling them to {args.rows} ...", flush=True)
    events, truth = simulated_events(args.rows)
    print(f"  {events.height} events for {truth.height} interactions", flush=True)

    started = time.perf_counter()
    features = interaction_features(events)
    t_features = time.perf_counter() - started
    registry = default_registry()
    started = time.perf_counter()
    L, _ = registry.apply(features)
    t_lfs = time.perf_counter() - started
    started = time.perf_counter()
    model = LabelModel(cardinality=CARDINALITY, seed=0).fit(L)
    probs = model.predict_proba(L)
    t_model = time.perf_counter() - started
    core = t_features + t_lfs + t_model
    print(f"features {t_features:.2f}s, labeling functions {t_lfs:.2f}s, label model {t_model:.2f}s: {core:.2f}s")

    labels = probs.argmax(axis=1)
    covered = (L != -1).any(axis=1)
    gold = features.join(truth, on="interaction_id", how="left").get_column("good").cast(pl.Int64).to_numpy()
    mv = majority_vote(L, cardinality=CARDINALITY)
    print(f"accuracy against the hidden truth: label model {np.mean(labels == gold):.3f}, "
          f"majority vote {np.mean(mv == gold):.3f}")

    started = time.perf_counter()
    given = np.where(covered, labels, -1)
    texts = features.select("input_text", "output_text")
    signals = features.select(
        [pl.col(c).cast(pl.Float64).fill_null(-1.0) for c in SIGNAL_FEATURES]
        + [(pl.col("dwell_ms").cast(pl.Float64).fill_null(0.0) + 1.0).log().alias("log_dwell")]
    ).to_numpy()
    pred_probs = out_of_fold_probs(texts, signals, given, cardinality=CARDINALITY, folds=5, seed=0)
    issues = find_issues(given, pred_probs)
    t_clean = time.perf_counter() - started
    flagged = issues.get_column("is_issue").to_numpy()
    wrong = given != gold
    lift = wrong[flagged].mean() / wrong[given != -1].mean() if flagged.any() else float("nan")
    print(f"cleanlab stage {t_clean:.2f}s: {flagged.sum()} flagged; P(wrong | flagged) / P(wrong) = {lift:.1f}")

    baseline = row_wise_baseline(features, 200)
    total = core + t_clean
    print(f"baseline (row-wise application of the same functions, extrapolated): {baseline:.0f}s "
          f"= {baseline / t_lfs:.0f}x our labeling-function step")
    print(f"RESULT relabel_core_s={core:.2f} relabel_with_cleanlab_s={total:.2f} rows={features.height}")


if __name__ == "__main__":
    main()
