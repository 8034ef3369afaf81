"""`flywheel demo`: the whole loop on one machine with nothing else running.

simulate -> capture -> label -> queue -> slice -> export -> report.
Simulated product traffic goes to a JSON-lines file; capture validates it into a lake on local
disk with the same batch writer the Kafka consumer uses; the labeler turns behaviour into labels
and fills the annotation outbox (kept in the lake until an Argilla URL is configured); the health
report is written as HTML. Label quality is scored against the simulator's hidden truth.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from flywheel_feedback.services.annotation.outbox import read_items
from flywheel_feedback.services.capture.file_source import capture_file
from flywheel_feedback.services.labeler.pipeline import label_pass
from flywheel_feedback.services.lake.events import read_events
from flywheel_feedback.services.lake.labels import read_labels
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.report.build import build_report
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig


@dataclass
class DemoResult:
    workdir: Path
    events_sent: int
    landed: dict[str, int]
    rejected: int
    reasons: Counter[str] = field(default_factory=Counter)
    quality: dict[str, float] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)
    slices: list[str] = field(default_factory=list)
    exports: dict[str, int] = field(default_factory=dict)
    report: Path | None = None
    seconds: float = 0.0


def _planted_bad_lines() -> list[bytes]:
    """A few broken events, as real producers send them, to show the dead-letter path."""
    return [
        b'{"event_id": "broken-1", "type": "rating", "ts": "2026-11-01T00:00:00Z"',
        b'{"event_id": "bad-type", "type": "like", "ts": "2026-11-01T00:00:00Z", "interaction_id": "x"}',
        b'{"event_id": "bad-score", "type": "rating", "ts": "2026-11-01T00:00:00Z", "interaction_id": "x", '
        b'"score": 11}',
        b'{"type": "copy", "ts": "2026-11-01T00:00:00Z", "interaction_id": "x"}',
    ]


def label_quality(labels: pl.DataFrame, truth: pl.DataFrame) -> dict[str, float]:
    """The label model against majority vote of the same functions, and cleanlab's hit rate, on the truth."""
    from flywheel_feedback.labeling.default_lfs import default_registry
    from flywheel_feedback.labeling.label_model import majority_vote

    scored = labels.join(truth.select("interaction_id", "good"), on="interaction_id", how="inner")
    good = scored.get_column("good").cast(pl.Int64).to_numpy()
    L, _ = default_registry().apply(scored)
    weak = scored.get_column("weak_label").to_numpy()
    wrong = weak != good
    flagged = scored.get_column("is_issue").to_numpy()
    return {
        "label_model_accuracy": float(np.mean(scored.get_column("label").to_numpy() == good)),
        "majority_vote_accuracy": float(np.mean(majority_vote(L, cardinality=2) == good)),
        "flagged": float(flagged.sum()),
        "p_wrong_if_flagged": float(wrong[flagged].mean()) if flagged.any() else float("nan"),
        "p_wrong": float(wrong.mean()),
    }


def run_demo(workdir: Path, *, interactions: int = 20_000, seed: int = 7, echo: bool = True) -> DemoResult:
    started = time.perf_counter()

    def say(text: str) -> None:
        if echo:
            print(text, flush=True)

    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    events_path = workdir / "traffic" / "events.jsonl"
    truth_path = workdir / "traffic" / "truth.parquet"
    steps = 6

    say(f"[1/{steps}] simulating {interactions} interactions of product traffic -> {events_path}")
    sent = simulate_to_file(
        SimulationConfig(interactions=interactions, seed=seed),
        events_path,
        truth_path,
        progress=lambda n: say(f"      {n} events"),
    )
    with events_path.open("ab") as f:
        for line in _planted_bad_lines():
            f.write(line + b"\n")
    sent += len(_planted_bad_lines())

    lake = LocalStore(workdir / "lake")
    say(f"[2/{steps}] capturing into the lake at {lake.root}")
    captured = capture_file(events_path, lake, progress=lambda n: say(f"      {n}/{sent} lines"))
    events = read_events(lake, columns=["type"])
    landed = dict(sorted(Counter(events.get_column("type").to_list()).items()))
    say(
        f"      landed {events.height} unique events (duplicates removed by event_id); "
        f"rejected {captured.rejected} to {lake.root / 'dead-letter'}:"
    )
    for reason in captured.reasons:
        say(f"        - {reason}")

    say(f"[3/{steps}] labeling: features, labeling functions, label model, cleanlab, routing")
    result = label_pass(lake, progress=lambda s: say(f"      {s}"))
    labels = read_labels(lake)
    assert labels is not None
    truth = pl.read_parquet(truth_path)
    quality = label_quality(labels, truth)

    say(f"[4/{steps}] eval slice: built before the drift, then renewed against today's traffic")
    slice_lines = _slice(lake, truth, say)
    say(f"[5/{steps}] training exports: SFT, preference pairs, classifier data")
    exports = _exports(lake, say)
    outbox = read_items(lake)
    queued = dict(sorted(outbox.group_by("queue").agg(pl.len()).iter_rows())) if outbox.height else {}

    report = workdir / "report.html"
    say(f"[6/{steps}] writing the health report -> {report}")
    build_report(lake, report, truth=truth)

    demo = DemoResult(
        workdir=workdir,
        events_sent=sent,
        landed=landed,
        rejected=captured.rejected,
        reasons=Counter(r.split(";")[0].split(":")[0] for r in captured.reasons),
        quality=quality,
        queued=queued,
        slices=slice_lines,
        exports=exports,
        report=report,
        seconds=time.perf_counter() - started,
    )
    _summary(demo, result.interactions, say)
    (workdir / "summary.json").write_text(json.dumps(_as_json(demo), indent=2))
    return demo


DEMO_SLICE = {
    "name": "demo-eval",
    "description": "Every task, stratified like production; renewed when traffic moves.",
    "size": 600,
    "strata": ["task", "segment", "model_version", "topic_cluster"],
    "min_gold_share": 0.0,
    "min_confidence": 0.8,
    "max_age": "30d",
    "window": "24h",
    "drift_threshold": 0.05,
    "clusters": 24,
    "renewal_budget": 200,
}


def _slice(lake: LocalStore, truth: pl.DataFrame, say: Any) -> list[str]:
    """v1 from the traffic before the drift point, then a renewal over all of it."""
    from flywheel_feedback.services.slices.build import renew
    from flywheel_feedback.services.slices.definitions import SliceDefinition
    from flywheel_feedback.services.slices.report import renewal_lines

    definition = SliceDefinition.model_validate(DEMO_SLICE)
    times = truth.get_column("ts").sort()
    midpoint = times[len(times) // 2]
    first = renew(lake, definition, as_of=midpoint)
    lines = [f"{definition.name} v{first.version}: {first.rows} rows from traffic up to {midpoint:%Y-%m-%d %H:%M}"]
    second = renew(lake, definition)
    lines += renewal_lines(second)
    for line in lines:
        say(f"      {line}")
    return lines


def _exports(lake: LocalStore, say: Any) -> dict[str, int]:
    from flywheel_feedback.services.slices.exports import export

    rows: dict[str, int] = {}
    for kind in ("sft", "preference", "classifier"):
        result = export(lake, kind)
        rows[kind] = result.rows
        say(f"      {kind}: {result.rows} records (v{result.version})")
    return rows


def _summary(demo: DemoResult, labeled: int, say: Any) -> None:
    q = demo.quality
    say("")
    say("summary")
    say(f"  events sent {demo.events_sent}, landed per type:")
    width = max(len(k) for k in demo.landed) if demo.landed else 4
    for kind, count in demo.landed.items():
        say(f"    {kind:<{width}}  {count:>7}")
    say(f"  rejected {demo.rejected}: {dict(demo.reasons)}")
    say(f"  labeled {labeled} interactions; against the simulator's hidden truth:")
    say(f"    label model accuracy {q['label_model_accuracy']:.3f} vs majority vote {q['majority_vote_accuracy']:.3f}")
    say(
        f"    cleanlab flagged {q['flagged']:.0f}: {q['p_wrong_if_flagged']:.2f} of them truly mislabelled "
        f"vs {q['p_wrong']:.2f} of all ({q['p_wrong_if_flagged'] / max(q['p_wrong'], 1e-9):.1f}x)"
    )
    say(f"  annotation outbox (waiting for an Argilla URL): {demo.queued}")
    for line in demo.slices:
        say(f"  {line}")
    say(f"  training exports: {demo.exports}")
    say(f"  report: {demo.report}")
    say(f"done in {demo.seconds:.1f}s")


def _as_json(demo: DemoResult) -> dict[str, Any]:
    return {
        "events_sent": demo.events_sent,
        "landed": demo.landed,
        "rejected": demo.rejected,
        "reasons": dict(demo.reasons),
        "label_quality": demo.quality,
        "queued": demo.queued,
        "slices": demo.slices,
        "exports": demo.exports,
        "report": str(demo.report),
        "seconds": demo.seconds,
    }


def landed_frame(workdir: Path) -> pl.DataFrame:
    return read_events(LocalStore(workdir / "lake"))
