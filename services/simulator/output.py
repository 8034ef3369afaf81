"""Where simulated traffic goes: a JSONL file or a Kafka topic; the hidden truth goes to Parquet."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

from flywheel_feedback.services.simulator.traffic import SimulationConfig, Truth, generate

Progress = Callable[[int], None]


def write_truth(truths: Iterable[Truth], path: Path) -> int:
    rows = [asdict(t) for t in truths]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(rows) if rows else pl.DataFrame()
    frame.write_parquet(path)
    return len(rows)


def simulate_to_file(
    config: SimulationConfig, events_path: Path, truth_path: Path, *, progress: Progress | None = None
) -> int:
    """Write events as JSON lines in arrival order; returns the number of events."""
    events_path.parent.mkdir(parents=True, exist_ok=True)
    truths: list[Truth] = []
    n = 0
    with events_path.open("w", encoding="utf-8") as f:
        for event, truth in generate(config):
            f.write(json.dumps(event, separators=(",", ":")))
            f.write("\n")
            n += 1
            if truth is not None:
                truths.append(truth)
            if progress is not None and n % 10_000 == 0:
                progress(n)
    write_truth(truths, truth_path)
    return n


def simulate_to_kafka(
    config: SimulationConfig,
    *,
    send: Callable[[bytes, bytes], Any],
    truth_path: Path,
    progress: Progress | None = None,
) -> int:
    """Send events through `send(value, key)` (an Emitter's send_raw); returns the number sent."""
    truths: list[Truth] = []
    n = 0
    for event, truth in generate(config):
        send(json.dumps(event, separators=(",", ":")).encode(), event["interaction_id"].encode())
        n += 1
        if truth is not None:
            truths.append(truth)
        if progress is not None and n % 10_000 == 0:
            progress(n)
    write_truth(truths, truth_path)
    return n
