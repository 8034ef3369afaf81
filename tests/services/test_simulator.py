from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import polars as pl

from flywheel_feedback.services.capture.validate import check_message
from flywheel_feedback.services.simulator.output import simulate_to_file
from flywheel_feedback.services.simulator.traffic import SimulationConfig, Truth, generate


def run(n: int = 6000, **options: object) -> tuple[list[dict[str, object]], dict[str, Truth]]:
    events: list[dict[str, object]] = []
    truth: dict[str, Truth] = {}
    for event, t in generate(SimulationConfig(interactions=n, **options)):  # type: ignore[arg-type]
        events.append(event)
        if t is not None:
            truth[t.interaction_id] = t
    return events, truth


def test_every_event_meets_the_contract() -> None:
    events, truth = run(1500)
    assert all(isinstance(check_message(json.dumps(e).encode(), max_bytes=1 << 20), bytes) for e in events)
    assert 1500 <= len(truth) <= 1502


def test_reactions_follow_the_hidden_quality() -> None:
    events, truth = run()
    kinds: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e["type"] != "interaction":
            kinds[str(e["interaction_id"])].add(str(e["type"]))

    def rate(kind: str, good: bool) -> float:
        ids = [i for i, t in truth.items() if t.good == good]
        return sum(kind in kinds[i] for i in ids) / len(ids)

    for kind in ("edit", "retry", "abandon"):
        assert rate(kind, False) > 2 * rate(kind, True), kind
    for kind in ("copy", "accept"):
        assert rate(kind, True) > 3 * rate(kind, False), kind
    ratings = sum(1 for e in events if e["type"] == "rating")
    assert 0.004 < ratings / len(truth) < 0.02


def test_traffic_has_duplicates_late_and_out_of_order_events() -> None:
    events, _truth = run()
    ids = Counter(str(e["event_id"]) for e in events)
    assert any(c > 1 for c in ids.values())
    seen: set[str] = set()
    before_interaction = 0
    late = 0
    last_ts = ""
    for e in events:
        if e["type"] == "interaction":
            seen.add(str(e["interaction_id"]))
        elif e["interaction_id"] not in seen:
            before_interaction += 1
        late += str(e["ts"]) < last_ts
        last_ts = max(last_ts, str(e["ts"]))
    assert before_interaction > 0
    assert late > 0


def test_drift_shifts_topics_and_model_versions() -> None:
    _, truth = run()
    rows = sorted(truth.values(), key=lambda t: t.ts)
    first, second = rows[: len(rows) // 3], rows[-len(rows) // 3 :]
    assert "account-deletion" not in {t.topic for t in first}
    assert "account-deletion" in {t.topic for t in second}
    assert {t.model_version for t in first if t.app == "support-bot"} == {"2026-09-01"}
    assert {t.model_version for t in second if t.app == "support-bot"} == {"2026-11-15"}
    _, steady = run(drift=False)
    assert "account-deletion" not in {t.topic for t in steady.values()}


def test_the_same_seed_gives_the_same_traffic(tmp_path: Path) -> None:
    a = simulate_to_file(SimulationConfig(interactions=300), tmp_path / "a.jsonl", tmp_path / "a.parquet")
    b = simulate_to_file(SimulationConfig(interactions=300), tmp_path / "b.jsonl", tmp_path / "b.parquet")
    assert a == b
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    truth = pl.read_parquet(tmp_path / "a.parquet")
    assert 300 <= truth.height <= 302 and {"interaction_id", "good", "topic"} <= set(truth.columns)
