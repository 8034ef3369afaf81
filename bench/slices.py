"""Eval slices at a million interactions: build, pull (local lake and S3), renew after drift.

    python bench/slices.py [--rows 1000000] [--base 50000] [--workdir .run/bench-slices]

Traffic: the simulator with drift (the topic mix shifts halfway, a new topic appears, model versions
change), `--base` interactions captured and labeled by the real labeler (with 2% human gold), then the
labels table tiled with fresh interaction ids until a million interactions are eligible for a slice.
Copy c of an interaction is served c microseconds after the original, so the time order and the drift
point are kept.

Figures:
- build: the first version of a slice of `--rows` rows over every interaction (clusters, strata, masking,
  hashing, writing, the Delta commit);
- pull: `load_slice` of that version (its commit found in the Delta log, the table opened at that version,
  read, SHA-256 check, decode) from the local lake and from the S3
  server of `deploy/stack.sh up` (.run/stack.env or FLYWHEEL_TEST_S3_* variables); the median of 3;
- renew: an eval slice built from the traffic before the drift point, renewed over all of it (drift
  measured against the recent window, keep / retire / fill, renewal queue, publication), with the
  divergence before and after.
Ends with `RESULT pull_local_s=<s> pull_s3_s=<s> build_s=<s> renew_s=<s> rows=<n>`.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import random
import shutil
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from flywheel_feedback.services.annotation.gold import GoldResponse, land
from flywheel_feedback.services.capture.file_source import capture_file
from flywheel_feedback.services.labeler.pipeline import LabelerOptions, label_pass
from flywheel_feedback.services.lake.labels import read_labels, replace_labels
from flywheel_feedback.services.lake.store import LocalStore, ObjectStore, open_store
from flywheel_feedback.services.lake.tables import RAW_EVENTS
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig
from flywheel_feedback.services.slices import load_slice
from flywheel_feedback.services.slices.build import renew
from flywheel_feedback.services.slices.definitions import SliceDefinition
from flywheel_feedback.services.slices.versions import slice_root

REPO = Path(__file__).resolve().parent.parent

FULL = SliceDefinition(
    name="bench-full", size=1_000_000, min_confidence=0.5, window=timedelta(days=30), max_age=timedelta(days=30),
    min_gold_share=0.0, clusters=24,
)
EVAL = SliceDefinition(
    name="bench-eval", size=20_000, min_confidence=0.8, window=timedelta(hours=24), max_age=timedelta(days=14),
    min_gold_share=0.01, drift_threshold=0.05, clusters=24, renewal_budget=2000,
)


def say(text: str) -> None:
    print(text, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def base_lake(workdir: Path, interactions: int) -> tuple[LocalStore, pl.DataFrame]:
    """Simulated, captured, gold for 2%, labeled; reused when the workdir already has it."""
    store = LocalStore(workdir / "base-lake")
    truth_path = workdir / "truth.parquet"
    if read_labels(store, columns=["interaction_id"]) is not None and truth_path.exists():
        say(f"reusing the labeled base lake in {store.root}")
        return store, pl.read_parquet(truth_path)
    events = workdir / "events.jsonl"
    say(f"simulating {interactions} interactions with drift ...")
    simulate_to_file(SimulationConfig(interactions=interactions, seed=13, drift=True), events, truth_path)
    say("capturing ...")
    capture_file(events, store)
    truth = pl.read_parquet(truth_path)
    rng = random.Random(13)
    gold = [
        GoldResponse(interaction_id=iid, queue="audit", dataset="flywheel-audit", annotator="bench",
                     annotator_id="bench", label=int(good), correction=None,
                     submitted_at=datetime(2026, 11, 20, tzinfo=UTC), response_id=f"bench-{i}", source="reconcile")
        for i, (iid, good) in enumerate(truth.select("interaction_id", "good").iter_rows()) if rng.random() < 0.02
    ]
    land(store, gold)
    say("labeling (label model, no cleanlab stage: slices do not read its output) ...")
    label_pass(store, options=LabelerOptions(with_cleanlab=False))
    return store, truth


def tiled_lake(base: LocalStore, workdir: Path, *, eligible_rows: int) -> tuple[LocalStore, int]:
    """The base labels tiled until `eligible_rows` interactions could enter the 1M slice."""
    labels = read_labels(base)
    assert labels is not None
    per_copy = labels.filter(pl.col("covered") | (pl.col("source") == "human")).height
    # strata get shares of all traffic, eligible or not: a 6% margin keeps every stratum's target reachable
    copies = math.ceil(eligible_rows * 1.06 / per_copy)
    tiles = [
        labels.with_columns(pl.col("interaction_id") + f"~{c}", pl.col("ts") + pl.duration(microseconds=c))
        for c in range(copies)
    ]
    tiled = pl.concat(tiles)
    store = LocalStore(workdir / f"lake-{uuid.uuid4().hex[:8]}")
    replace_labels(store, tiled)
    for key in base.list(RAW_EVENTS.name):  # the raw table, for the event ranges a manifest records
        store.put(key, base.get(key))
    return store, tiled.height


def s3_target() -> tuple[str, dict[str, str]] | None:
    values = {k: v for k, v in os.environ.items() if k.startswith("FLYWHEEL_TEST_S3_")}
    env_file = REPO / ".run" / "stack.env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith("FLYWHEEL_TEST_S3_"):
                values.setdefault(key.strip(), value.strip().strip("'\""))
    try:
        options = {"endpoint_url": values["FLYWHEEL_TEST_S3_ENDPOINT"],
                   "aws_access_key_id": values["FLYWHEEL_TEST_S3_ACCESS_KEY"],
                   "aws_secret_access_key": values["FLYWHEEL_TEST_S3_SECRET_KEY"],
                   "region_name": values.get("FLYWHEEL_TEST_S3_REGION", "us-east-1")}
        return f"s3://{values['FLYWHEEL_TEST_S3_BUCKET']}/bench-slices-{uuid.uuid4().hex[:8]}", options
    except KeyError:
        return None


def median_pull(lake: ObjectStore, name: str, runs: int = 3) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(runs):
        seconds, frame = timed(lambda: load_slice(name, lake=lake))
        times.append(seconds)
        rows = frame.height
    return statistics.median(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the pulled slice")
    parser.add_argument("--base", type=int, default=50_000, help="interactions simulated and labeled")
    parser.add_argument("--workdir", type=Path, default=REPO / ".run" / "bench-slices")
    parser.add_argument("--keep", action="store_true", help="keep the tiled lake (the base lake is always kept)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    for module in ("sklearn.cluster", "sklearn.feature_extraction.text"):
        importlib.import_module(module)  # before any timing: an import is not part of a build

    base, truth = base_lake(args.workdir, args.base)
    store, interactions = tiled_lake(base, args.workdir, eligible_rows=args.rows)
    say(f"tiled to {interactions} labeled interactions in {store.root}")

    full = FULL.model_copy(update={"size": args.rows})
    build_s, built = timed(lambda: renew(store, full))
    say(f"build: {full.name} v{built.version}, {built.rows} rows over {interactions} interactions in {build_s:.2f}s")

    pull_local_s, rows = median_pull(store, full.name)
    say(f"pull from the local lake: {rows} rows in {pull_local_s:.3f}s (median of 3, hash checked)")

    pull_s3_s = float("nan")
    target = s3_target()
    if target is None:
        say("no S3 server configured (.run/stack.env): pull_s3_s=nan")
    else:
        s3 = open_store(target[0], **target[1])
        root = slice_root(full.name)
        for key in store.list(root):  # the slice's Delta table: its log and its files
            s3.put(key, store.get(key))
        pull_s3_s, _ = median_pull(s3, full.name)
        say(f"pull from S3 ({target[1]['endpoint_url']}): {rows} rows in {pull_s3_s:.3f}s (median of 3)")
        for key in s3.list(root):
            s3.delete(key)

    drift_at = truth.filter(pl.col("model_version") == "2026-11-15").get_column("ts").min()
    assert isinstance(drift_at, datetime)
    first_s, first = timed(lambda: renew(store, EVAL, as_of=drift_at))
    say(f"eval slice {EVAL.name} v1 from the traffic before the drift point: {first.rows} rows in {first_s:.2f}s")
    renew_s, renewed = timed(lambda: renew(store, EVAL))
    before, after = renewed.drift_before, renewed.drift_after
    assert before is not None and after is not None
    say(f"renew over {interactions} interactions: v{renewed.version} ({renewed.reason}) in {renew_s:.2f}s; "
        f"kept {renewed.kept}, added {renewed.added}, retired {renewed.retired}, {renewed.queued} to the renewal queue")
    say("divergence before -> after: " + ", ".join(
        f"{k} {before.by_dimension[k]:.4f} -> {after.by_dimension[k]:.1e}" for k in before.by_dimension))
    say(f"uncovered clusters before: {[g.name for g in before.uncovered]}; after: {[g.name for g in after.uncovered]}")
    if not args.keep:
        shutil.rmtree(store.root)
    print(f"RESULT pull_local_s={pull_local_s:.3f} pull_s3_s={pull_s3_s:.3f} build_s={build_s:.2f} "
          f"renew_s={renew_s:.2f} rows={rows}")


if __name__ == "__main__":
    main()
