"""What a labeler pass costs after +10k new interactions, on a history of 1M and of 4M interactions.

    python bench/labeler_incremental.py [--small N]   # --small: histories of N and 4N (a quick check)

The history is the simulator's traffic (realistic behaviour: edits, retries, late events, duplicates) for
`BASE` interactions over 12 hours, tiled with fresh ids and shifted in time: 100k interactions a day, so 1M is
10 days and 4M is 40. Each tile is one commit to the raw Delta table. Then a full relabel (timed at 4M), one
increment of 10k new interactions with a pass to warm up, and a second increment whose pass is the figure.
Every pass runs in its own process, so its peak memory (ru_maxrss) is its own. The baseline is the full
relabel of the same history, in the same run. Ends with
`RESULT incr_1m_s=<s> incr_4m_s=<s> full_4m_s=<s> incr_peak_rss_1m_mb=<MB> incr_peak_rss_4m_mb=<MB>`.
Targets (issue 10): incr_4m <= 1.5 x incr_1m, incr_4m <= full_4m / 10, rss_4m <= 1.5 x rss_1m.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from flywheel_feedback.services.capture.validate import check_message
from flywheel_feedback.services.lake import delta
from flywheel_feedback.services.lake.events import events_frame
from flywheel_feedback.services.lake.store import LocalStore
from flywheel_feedback.services.lake.tables import RAW_EVENTS
from flywheel_feedback.services.simulator.traffic import SimulationConfig, generate

BASE = 50_000
TILE = timedelta(hours=12)
START = datetime(2026, 1, 1, tzinfo=UTC)
INCREMENT = 10_000


def simulated(interactions: int, *, seed: int, start: datetime, hours: float) -> pl.DataFrame:
    config = SimulationConfig(interactions=interactions, seed=seed, start=start, hours=hours)
    lines = []
    for event, _ in generate(config):
        line = check_message(json.dumps(event).encode(), max_bytes=1 << 20)
        assert isinstance(line, bytes)
        lines.append(line)
    return events_frame(lines, topic="bench", partition=0, offsets=list(range(len(lines))))


def build_history(lake: Path, interactions: int) -> datetime:
    """Tiles of the base traffic, one commit each; returns when the history ends."""
    store = LocalStore(lake)
    base = simulated(BASE, seed=11, start=START, hours=TILE / timedelta(hours=1))
    tiles = -(-interactions // BASE)
    for k in range(tiles):
        shift = TILE * k
        tile = base.with_columns(
            pl.col("event_id") + f"~{k}",
            pl.col("interaction_id") + f"~{k}",
            pl.col("ts") + shift,
            pl.lit(k, dtype=pl.Int32).alias("kafka_partition"),
        ).with_columns(pl.col("ts").dt.date().alias("date"))
        delta.append(store, RAW_EVENTS, tile)
        print(f"  history: tile {k + 1}/{tiles}", end="\r", flush=True)
    print()
    return START + TILE * tiles


def add_increment(lake: Path, *, start: datetime, seed: int) -> None:
    """10k new interactions after the history (at the history's rate), one commit."""
    hours = INCREMENT / BASE * (TILE / timedelta(hours=1))
    frame = simulated(INCREMENT, seed=seed, start=start, hours=hours).with_columns(
        pl.col("event_id") + f"~new{seed}", pl.col("interaction_id") + f"~new{seed}",
        pl.lit(10_000 + seed, dtype=pl.Int32).alias("kafka_partition"),
    ).with_columns(pl.col("ts").dt.date().alias("date"))
    delta.append(LocalStore(lake), RAW_EVENTS, frame)


def timed_pass(lake: Path, *, full: bool) -> tuple[float, float, str]:
    """A labeler pass in a child process: (seconds, peak RSS in MB, its mode)."""
    code = (
        "import sys, time, json\n"
        "from pathlib import Path\n"
        "from flywheel_feedback.services.labeler.pipeline import label_pass\n"
        "from flywheel_feedback.services.lake.store import LocalStore\n"
        "t = time.perf_counter()\n"
        f"r = label_pass(LocalStore(Path({str(lake)!r})), force={full})\n"
        "print(json.dumps({'s': time.perf_counter() - t, 'mode': r.mode, 'rows': r.interactions}))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"the labeler pass failed (exit {child.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    return float(result["s"]), usage.ru_maxrss / 1024, f"{result['mode']}, {result['rows']} rows"


def measure(interactions: int, workdir: Path) -> dict[str, float]:
    lake = workdir / f"lake-{interactions}"
    print(f"history of {interactions} interactions -> {lake}", flush=True)
    end = build_history(lake, interactions)
    full_s, full_rss, full_mode = timed_pass(lake, full=True)
    print(f"  full relabel: {full_s:.1f}s, peak {full_rss:.0f} MB ({full_mode})", flush=True)
    add_increment(lake, start=end, seed=1)
    warm_s, _, warm_mode = timed_pass(lake, full=False)
    print(f"  pass after +{INCREMENT} (warm-up): {warm_s:.2f}s ({warm_mode})", flush=True)
    hours = INCREMENT / BASE * (TILE / timedelta(hours=1))
    add_increment(lake, start=end + timedelta(hours=hours), seed=2)
    incr_s, incr_rss, incr_mode = timed_pass(lake, full=False)
    print(f"  pass after +{INCREMENT}: {incr_s:.2f}s, peak {incr_rss:.0f} MB ({incr_mode})", flush=True)
    return {"full_s": full_s, "incr_s": incr_s, "incr_rss": incr_rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=0, help="histories of N and 4N interactions instead")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    small, large = (args.small, 4 * args.small) if args.small else (1_000_000, 4_000_000)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        one = measure(small, Path(tmp))
        four = measure(large, Path(tmp))
    print(f"incremental pass: {four['incr_s'] / one['incr_s']:.2f}x from {small} to {large} interactions "
          f"(target <= 1.5); {four['incr_s'] / four['full_s']:.3f}x the full relabel at {large} (target <= 0.1); "
          f"peak memory {four['incr_rss'] / one['incr_rss']:.2f}x (target <= 1.5)")
    print(f"RESULT incr_1m_s={one['incr_s']:.2f} incr_4m_s={four['incr_s']:.2f} full_4m_s={four['full_s']:.1f} "
          f"incr_peak_rss_1m_mb={one['incr_rss']:.0f} incr_peak_rss_4m_mb={four['incr_rss']:.0f}")


if __name__ == "__main__":
    main()
