"""`flywheel demo`: the whole loop on one machine with nothing else running.

Simulated product traffic goes to a JSON-lines file, capture validates it into a lake on
local disk (the same batch writer the Kafka consumer uses), and the demo prints what landed
per event type and what was rejected.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from services.capture.file_source import capture_file
from services.lake.events import read_events
from services.lake.store import LocalStore
from services.simulator.output import simulate_to_file
from services.simulator.traffic import SimulationConfig


@dataclass
class DemoResult:
    workdir: Path
    events_sent: int
    landed: dict[str, int]
    rejected: int
    reasons: Counter[str] = field(default_factory=Counter)
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


def run_demo(workdir: Path, *, interactions: int = 5_000, seed: int = 7, echo: bool = True) -> DemoResult:
    started = time.perf_counter()

    def say(text: str) -> None:
        if echo:
            print(text, flush=True)

    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    events_path = workdir / "traffic" / "events.jsonl"
    truth_path = workdir / "traffic" / "truth.parquet"

    say(f"[1/2] simulating {interactions} interactions of product traffic -> {events_path}")
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
    say(f"[2/2] capturing into the lake at {lake.root}")
    result = capture_file(events_path, lake, progress=lambda n: say(f"      {n}/{sent} lines"))
    events = read_events(lake)
    landed = dict(sorted(Counter(events.get_column("type").to_list()).items()))
    reasons = Counter(r.split(":")[0] for r in result.reasons)

    say("")
    say(f"sent {sent} events; landed {events.height} unique events (duplicates removed by event_id):")
    width = max(len(k) for k in landed) if landed else 4
    for kind, count in landed.items():
        say(f"  {kind:<{width}}  {count:>7}")
    say(f"rejected {result.rejected} (in {lake.root / 'dead-letter'}):")
    for reason in result.reasons:
        say(f"  - {reason}")
    demo = DemoResult(
        workdir=workdir,
        events_sent=sent,
        landed=landed,
        rejected=result.rejected,
        reasons=reasons,
        seconds=time.perf_counter() - started,
    )
    (workdir / "summary.json").write_text(
        json.dumps(
            {"events_sent": sent, "landed": landed, "rejected": result.rejected, "reasons": result.reasons},
            indent=2,
        )
    )
    say(f"done in {demo.seconds:.1f}s; summary in {workdir / 'summary.json'}")
    return demo


def landed_frame(workdir: Path) -> pl.DataFrame:
    return read_events(LocalStore(workdir / "lake"))
